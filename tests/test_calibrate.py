"""Calibration's fast paths give what `earmark label` would: the grid search's segment times
and matches equal `runs_to_segments` + `event_f1`, and scores shared across hops equal
scoring each hop's windows."""
import numpy as np
import pytest

from earmark.model import calibrate, event_metrics
from earmark.model.events import Event
from earmark.model.segments import (PostProcessing, WindowGrid, merge_runs, runs_to_segments,
                                    smooth, threshold_runs, window_bounds)
from earmark.model.windowing import frame_windows


def _night(rng, hop_s, duration_s):
    """Noisy scores [windows] with bumps over random events, and those events."""
    n = int(duration_s / hop_s)
    scores, events, t = rng.uniform(0, 0.4, n), [], rng.uniform(0, 5)
    while t < duration_s - 5:
        d = rng.uniform(0.5, 4)
        events.append(Event(round(t, 3), round(t + d, 3), "x"))
        scores[int(t / hop_s):int((t + d) / hop_s) + 1] += rng.uniform(0.2, 0.7)
        t += d + rng.uniform(1, 20)
    return np.clip(scores + rng.normal(0, 0.1, n), 0, 1), events


@pytest.mark.parametrize("hop_s,window_s", [(0.48, 0.975), (1.5, 3.0), (0.75, 3.0)])
def test_grid_search_segments_and_matches_equal_label_s(hop_s, window_s):
    rng = np.random.default_rng(int(hop_s * 100))
    grid = WindowGrid(hop_s, window_s)
    for _ in range(3):
        scores, truth = _night(rng, hop_s, rng.uniform(60, 200))
        lo, hi = window_bounds(len(scores), grid, len(scores) * hop_s + 0.3)
        t_start, t_end = (np.array([getattr(e, a) for e in truth]) for a in ("start_s", "end_s"))
        for pp in (PostProcessing(0.5), PostProcessing(0.3, 3, 0.5, 1.0, window_s / 3),
                   PostProcessing(0.7, 5, 1.0, 0.25, 0.0), PostProcessing(0.05, 1, 0, 0.5, 0.5)):
            sm = smooth(scores, pp.smoothing_windows)
            segments = runs_to_segments(sm, "x", pp, lo, hi)
            starts, ends, _, _ = merge_runs(*threshold_runs(sm, pp.threshold), pp, lo, hi)
            rounded = [(round(float(a), 3), round(float(b), 3)) for a, b in zip(starts, ends)]
            assert [(s.start_s, s.end_s) for s in segments] == rounded
            found = [Event(s.start_s, s.end_s, "x") for s in segments]
            p_start, p_end = (np.array([r[i] for r in rounded]) for i in (0, 1))
            assert event_metrics.matched_count(t_start, t_end, p_start, p_end) == \
                event_metrics.event_f1(truth, found)[0] == len(event_metrics.match_iou(truth, found))


def test_scores_shared_across_hops_equal_each_hop_scored_alone():
    rng = np.random.default_rng(0)
    window, hops = 400, [200, 100, 300, 150]   # 150: not a multiple, scored alone
    sequences = [calibrate.Sequence(f"s{i}", rng.normal(size=n).astype(np.float32), ())
                 for i, n in enumerate((1234, 400, 399, 1500, 1601))]
    calls = []

    def predict(windows):   # a deterministic "model": two numbers per window
        calls.append(len(windows))
        return np.stack([windows.mean(axis=1), np.abs(windows).max(axis=1)], axis=1)

    shared = calibrate.score_sequences(sequences, predict, window, hops)
    scored = sum(calls)
    for h in hops:
        for s, got in zip(sequences, shared[h]):
            np.testing.assert_array_equal(got, predict(frame_windows(s.waveform, window, h)))
    alone = sum(len(frame_windows(s.waveform, window, h)) for s in sequences for h in hops)
    assert scored < alone   # the model ran on fewer windows than each hop alone
