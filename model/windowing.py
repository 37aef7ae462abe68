"""The one rule that cuts a recording into model windows, shared by prepare, train's
calibration, evaluate and label (which reads chunks of whole windows on this grid).

Window k covers samples [k·hop, k·hop + window) at the model's rate. Windows continue until
one reaches the recording's end, so no audio is left unseen; the last window (or the only
one, for a recording shorter than a window) is zero-padded past the end. Whether a padded
window is good training data is decided by its overlap with events (`model.window_labels`),
not by cutting it away here.
"""
import math

import numpy as np


def count_windows(num_samples: int, window_samples: int, hop_samples: int) -> int:
    """Windows covering a recording of `num_samples` (at least one)."""
    if num_samples <= window_samples:
        return 1
    return 1 + math.ceil((num_samples - window_samples) / hop_samples)


def window_starts_s(num_samples: int, window_samples: int, hop_samples: int,
                    rate_hz: int) -> np.ndarray:
    """Start time in seconds of every window."""
    n = count_windows(num_samples, window_samples, hop_samples)
    return np.arange(n) * hop_samples / rate_hz


def padded_length(num_samples: int, window_samples: int, hop_samples: int) -> int:
    """Samples the windows span: the recording plus the zero padding of the last window."""
    n = count_windows(num_samples, window_samples, hop_samples)
    return (n - 1) * hop_samples + window_samples


def pad_for_windows(waveform: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """The waveform zero-padded to `padded_length` (never cut)."""
    missing = padded_length(len(waveform), window_samples, hop_samples) - len(waveform)
    return np.pad(waveform, (0, missing)) if missing > 0 else waveform


def frame_windows(waveform: np.ndarray, window_samples: int, hop_samples: int) -> np.ndarray:
    """Mono waveform → [windows, window_samples], the zero-padded tail included."""
    waveform = pad_for_windows(np.asarray(waveform, np.float32), window_samples, hop_samples)
    n = count_windows(len(waveform), window_samples, hop_samples)
    idx = np.arange(window_samples)[None, :] + hop_samples * np.arange(n)[:, None]
    return waveform[idx]
