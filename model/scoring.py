"""The one scoring path: a recording → its windows (`model.windowing`, the one rule) → the
model's scores per window. `earmark evaluate` (events) and train's calibration score whole
recordings with `score_recording`; `earmark label` cuts the same windows chunk by chunk
(`pipelines/chunks.py` frames each chunk with `windowing.frame_windows`), scores them with
`score_windows` in its inference step and puts a recording's scores back together with
`assemble_scores`. Pure functions, numpy in and out; `predict` is any callable
[n, window_samples] → [n, labels] (`model.serving.Predictor.predict`).
"""
import numpy as np

from earmark.model.windowing import frame_windows


def score_windows(predict, windows: np.ndarray, batch_size: int = None) -> np.ndarray:
    """[n, window_samples] windows → [n, labels] scores, `predict` called on consecutive
    batches of at most `batch_size` windows (None: once, on all of them)."""
    windows = np.asarray(windows)
    if not batch_size or len(windows) <= batch_size:
        return np.asarray(predict(windows))
    return np.concatenate([np.asarray(predict(windows[i:i + batch_size]))
                           for i in range(0, len(windows), batch_size)])


def score_recording(predict, waveform: np.ndarray, window_samples: int, hop_samples: int,
                    batch_size: int = None) -> np.ndarray:
    """Mono waveform at the model's rate → [windows, labels] scores of its windows every
    `hop_samples` (`windowing.frame_windows`: the last one zero-padded past the end)."""
    return score_windows(predict, frame_windows(waveform, window_samples, hop_samples), batch_size)


def assemble_scores(indexed, num_windows: int, num_labels: int):
    """(window index, scores [labels]) pairs of one recording, in any order → its scores
    [num_windows, num_labels] in window order, or None when some window is missing."""
    indexed = sorted(indexed, key=lambda kv: kv[0])
    if [k for k, _ in indexed] != list(range(num_windows)):
        return None
    return np.stack([s for _, s in indexed]) if indexed else np.zeros((0, num_labels))
