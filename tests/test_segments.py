import numpy as np

from earmark.model.segments import PostProcessing, WindowGrid, smooth, to_segments

G = WindowGrid(hop_s=0.5, window_s=1.0)


def pp(threshold=0.5, **kw):
    return PostProcessing(threshold=threshold, **kw)


def test_consecutive_positive_windows_merge_into_one_segment():
    scores = np.array([[0.1], [0.9], [0.8], [0.2], [0.95]])
    segs = to_segments(scores, ["snore"], [pp()], G, duration_s=3.0)
    assert [(s.start_s, s.end_s, s.confidence) for s in segs] == [(0.75, 1.75, 0.9), (2.25, 3.0, 0.95)]


def test_max_gap_joins_and_min_duration_drops():
    scores = np.array([[0.9], [0.1], [0.9], [0.1], [0.1], [0.1], [0.9]])
    joined = to_segments(scores, ["x"], [pp(max_gap_s=0.5)], G, 4.0)
    assert [(s.start_s, s.end_s) for s in joined] == [(0.0, 1.75), (3.25, 4.0)]
    long_only = to_segments(scores, ["x"], [pp(min_duration_s=0.6)], G, 4.0)
    assert [(s.start_s, s.end_s) for s in long_only] == [(0.0, 0.75), (3.25, 4.0)]


def test_per_label_settings_and_sorting():
    scores = np.array([[0.6, 0.3], [0.6, 0.7]])
    segs = to_segments(scores, ["a", "b"], [pp(0.7), pp(0.5)], G, duration_s=1.5)
    assert [s.label for s in segs] == ["b"]
    segs = to_segments(scores, ["a", "b"], [pp(0.5), pp(0.5)], G, duration_s=1.5)
    assert [(s.label, s.start_s) for s in segs] == [("a", 0.0), ("b", 0.75)]
    # each label its own merge gap
    scores = np.array([[0.9, 0.9], [0.1, 0.1], [0.9, 0.9]])
    segs = to_segments(scores, ["a", "b"], [pp(max_gap_s=0.5), pp()], G, 2.0)
    assert [(s.label, s.start_s, s.end_s) for s in segs] == [
        ("b", 0.0, 0.75), ("a", 0.0, 2.0), ("b", 1.25, 2.0)]  # by start, then end


def test_a_label_without_post_processing_is_not_written():
    scores = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert [s.label for s in to_segments(scores, ["snore", "background"], [None, pp()], G, 1.5)] == []
    assert [s.label for s in to_segments(scores, ["snore", "background"], [pp(), None], G, 1.5)] == ["snore"]


def test_smoothing_removes_a_single_spike():
    scores = np.array([[0.0], [0.0], [0.9], [0.0], [0.0]])
    assert to_segments(scores, ["x"], [pp(smoothing_windows=3)], G, 3.0) == []
    np.testing.assert_allclose(smooth(np.ones((4, 1)), 3), 1.0)
    np.testing.assert_allclose(smooth(np.ones(4), 3), 1.0)


def test_smoothing_wider_than_the_recording_keeps_one_value_per_window():
    """A recording with fewer windows than the smoothing width (a short file labeled with
    --smoothing 5, or short validation clips at train time) averages the windows there are."""
    np.testing.assert_allclose(smooth(np.array([1.0, 0.0, 0.0, 1.0]), 5), [1 / 3, 0.5, 0.5, 1 / 3])
    assert smooth(np.ones((2, 3)), 5).shape == (2, 3)
    scores = np.array([[0.9], [0.9], [0.9], [0.9]])
    assert [(s.start_s, s.end_s) for s in to_segments(scores, ["x"], [pp(smoothing_windows=5)],
                                                      G, 2.0)] == [(0.0, 2.0)]


def test_no_windows_no_segments():
    assert to_segments(np.zeros((0, 1)), ["x"], [pp()], G, 0.0) == []


def test_post_processing_round_trips_through_json_dicts():
    p = PostProcessing(0.35, 3, 0.5, 0.25)
    assert PostProcessing.from_dict(p.to_dict()) == p
