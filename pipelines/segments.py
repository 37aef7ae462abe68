"""Per-window scores of one recording → labeled time segments. Pure numpy.

Window k starts at k·hop and is `window_s` long; it "owns" the hop-long interval centred
on its middle, so consecutive positive windows tile time without overlap and a segment
runs from the first positive window's interval start to the last one's end.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SegmentParams:
    hop_s: float                 # seconds between window starts
    window_s: float              # seconds one window covers
    smoothing_windows: int = 1   # moving-average width over windows (1 = none)
    min_duration_s: float = 0.0  # drop shorter segments
    max_gap_s: float = 0.0       # merge same-label segments closer than this


@dataclasses.dataclass(frozen=True, order=True)
class Segment:
    start_s: float
    end_s: float
    label: str
    confidence: float


def smooth(scores: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over the window axis of [windows, classes]; edges use the
    windows that exist."""
    if width <= 1 or len(scores) == 0:
        return scores
    kernel = np.ones(width)
    total = np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="same"), 0, scores)
    counts = np.convolve(np.ones(len(scores)), kernel, mode="same")[:, None]
    return total / counts


def to_segments(scores: np.ndarray, labels, thresholds, params: SegmentParams,
                duration_s: float) -> list:
    """[windows, classes] scores → segments sorted by start, then label."""
    scores = smooth(np.asarray(scores, np.float64), params.smoothing_windows)
    centres = np.arange(len(scores)) * params.hop_s + params.window_s / 2
    lo = np.clip(centres - params.hop_s / 2, 0.0, duration_s)
    hi = np.clip(centres + params.hop_s / 2, 0.0, duration_s)
    if len(scores):
        lo[0] = 0.0  # the first window also owns the audio before its centre,
        hi[-1] = duration_s  # and the last one the tail after it
    out = []
    for c, label in enumerate(labels):
        positive = scores[:, c] >= thresholds[c]
        runs = []
        for k in np.flatnonzero(positive):
            if runs and (k == runs[-1][1] + 1 or lo[k] - hi[runs[-1][1]] <= params.max_gap_s):
                runs[-1][1] = k
            else:
                runs.append([k, k])
        for first, last in runs:
            start, end = float(lo[first]), float(hi[last])
            if end - start + 1e-9 >= params.min_duration_s and end > start:
                conf = float(scores[first:last + 1, c][positive[first:last + 1]].max())
                out.append(Segment(round(start, 3), round(end, 3), label, round(conf, 4)))
    return sorted(out)
