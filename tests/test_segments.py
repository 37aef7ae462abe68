import numpy as np
import pytest

from earmark.model.segments import PostProcessing, WindowGrid, smooth, threshold_runs, to_segments

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
    p = PostProcessing(0.35, 3, 0.5, 0.25, 0.1, low_threshold=0.2)
    assert PostProcessing.from_dict(p.to_dict()) == p


def test_a_dip_at_or_above_the_low_threshold_keeps_one_segment():
    """Hysteresis: a dip between positive windows splits the segment only where it falls
    below the low threshold; the segment's edges stay at windows at or above the threshold."""
    scores = np.array([[0.3], [0.9], [0.35], [0.9], [0.3]])
    split = to_segments(scores, ["x"], [pp()], G, 3.0)
    assert [(s.start_s, s.end_s) for s in split] == [(0.75, 1.25), (1.75, 2.25)]
    whole = to_segments(scores, ["x"], [pp(low_threshold=0.35)], G, 3.0)
    assert [(s.start_s, s.end_s, s.confidence) for s in whole] == [(0.75, 2.25, 0.9)]
    # the edges' windows (0.3) are above a low threshold of 0.25 too: they stay out
    assert to_segments(scores, ["x"], [pp(low_threshold=0.25)], G, 3.0) == whole
    assert to_segments(scores, ["x"], [pp(low_threshold=0.4)], G, 3.0) == split
    # a bump that never reaches the threshold makes no segment, however low the low one
    assert to_segments(np.array([[0.4], [0.45], [0.4]]), ["x"], [pp(low_threshold=0.1)], G,
                       2.0) == []


def test_threshold_runs_bridge_exactly_the_dips_that_stay_at_or_above_the_low_threshold():
    rng = np.random.default_rng(7)
    for _ in range(300):
        scores = rng.uniform(0, 1, rng.integers(0, 30))
        threshold = rng.uniform(0.3, 0.9)
        low = threshold * rng.choice([1.0, 0.75, 0.5, 0.25])
        expected = []   # windows at or above the threshold, joined over dips above `low`
        for i in np.flatnonzero(scores >= threshold):
            if expected and (scores[expected[-1][1] + 1:i] >= low).all():
                expected[-1][1] = i
            else:
                expected.append([i, i])
        firsts, lasts = threshold_runs(scores, threshold, low)
        assert [[a, b] for a, b in zip(firsts, lasts)] == expected


def test_settings_from_before_the_low_threshold_load_without_hysteresis():
    old = {"threshold": 0.6, "smoothing_windows": 3, "min_duration_s": 0.5, "max_gap_s": 0.0,
           "extend_s": 0.1}   # a model.json written before low_threshold
    assert PostProcessing.problem(old) is None
    loaded = PostProcessing.from_dict(old)
    assert loaded.low_threshold == 0.6 and loaded.to_dict() == {**old, "low_threshold": 0.6}
    assert PostProcessing(0.7).low_threshold == 0.7   # the default: none
    assert PostProcessing.problem({**old, "low_threshold": 0.7}) == (
        "low_threshold", "is 0.7; it must be at most the threshold (0.6)")
    assert PostProcessing.problem({**old, "low_threshold": -0.1})[1].endswith("a number in [0, 1]")
    with pytest.raises(ValueError, match="at most the threshold"):
        PostProcessing.from_dict({**old, "low_threshold": 0.7})
