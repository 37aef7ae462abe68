import numpy as np
import pytest

from pipelines.segments import SegmentParams, smooth, to_segments

P = SegmentParams(hop_s=0.5, window_s=1.0)


def test_consecutive_positive_windows_merge_into_one_segment():
    scores = np.array([[0.1], [0.9], [0.8], [0.2], [0.95]])
    segs = to_segments(scores, ["snore"], [0.5], P, duration_s=3.0)
    assert [(s.start_s, s.end_s, s.confidence) for s in segs] == [(0.75, 1.75, 0.9), (2.25, 3.0, 0.95)]


def test_max_gap_joins_and_min_duration_drops():
    scores = np.array([[0.9], [0.1], [0.9], [0.1], [0.1], [0.1], [0.9]])
    joined = to_segments(scores, ["x"], [0.5], SegmentParams(0.5, 1.0, max_gap_s=0.5), 4.0)
    assert [(s.start_s, s.end_s) for s in joined] == [(0.0, 1.75), (3.25, 4.0)]
    long_only = to_segments(scores, ["x"], [0.5], SegmentParams(0.5, 1.0, min_duration_s=0.6), 4.0)
    assert [(s.start_s, s.end_s) for s in long_only] == [(0.0, 0.75), (3.25, 4.0)]


def test_per_class_thresholds_and_sorting():
    scores = np.array([[0.6, 0.3], [0.6, 0.7]])
    segs = to_segments(scores, ["a", "b"], [0.7, 0.5], P, duration_s=1.5)
    assert [s.label for s in segs] == ["b"]
    segs = to_segments(scores, ["a", "b"], [0.5, 0.5], P, duration_s=1.5)
    assert [(s.label, s.start_s) for s in segs] == [("a", 0.0), ("b", 0.75)]


def test_smoothing_removes_a_single_spike():
    scores = np.array([[0.0], [0.0], [0.9], [0.0], [0.0]])
    assert to_segments(scores, ["x"], [0.5], SegmentParams(0.5, 1.0, smoothing_windows=3), 3.0) == []
    np.testing.assert_allclose(smooth(np.ones((4, 1)), 3), 1.0)


def test_no_windows_no_segments():
    assert to_segments(np.zeros((0, 1)), ["x"], [0.5], P, 0.0) == []
