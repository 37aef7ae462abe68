"""The log-mel frontend of `model.frontend`, in numpy: the same recipe, for serving without
TensorFlow (`--precision int8` runs its 8-bit model in the LiteRT runtime, so `earmark label`
never imports TensorFlow there).

Waveform windows [n, patch_samples] → [n, patch_frames, mel_bins], as the serving model's
`LogMel` layer computes them: frames of `window_samples` every `hop_samples`, no padding,
periodic Hann window, real FFT of `fft_length`, magnitude, HTK mel filterbank
(`tf.signal.linear_to_mel_weight_matrix`'s), log(mel + `log_offset`). Within 1e-4 of the
TensorFlow frontend (float32 FFTs round differently; tests/test_frontend_numpy.py).
"""
import functools

import numpy as np
import scipy.fft

from earmark.model.features import FeatureConfig

MEL_BREAK_HZ = 700.0
MEL_HIGH_Q = 1127.0


def hertz_to_mel(hz):
    """HTK mel scale, as TensorFlow's `linear_to_mel_weight_matrix` uses it."""
    return MEL_HIGH_Q * np.log1p(np.asarray(hz, np.float64) / MEL_BREAK_HZ)


@functools.lru_cache(maxsize=8)
def mel_matrix(config: FeatureConfig) -> np.ndarray:
    """[fft_length // 2 + 1, mel_bins] float32 HTK triangular filterbank; the DC bin is all
    zeros (`frontend.mel_matrix`'s numbers)."""
    bins = config.fft_length // 2 + 1
    bin_mel = hertz_to_mel(np.linspace(0.0, config.sample_rate_hz / 2.0, bins)[1:])[:, None]
    edges = np.linspace(hertz_to_mel(config.mel_min_hz), hertz_to_mel(config.mel_max_hz),
                        config.mel_bins + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    weights = np.maximum(0.0, np.minimum((bin_mel - lower) / (center - lower),
                                         (upper - bin_mel) / (upper - center)))
    weights = np.concatenate([np.zeros((1, config.mel_bins)), weights]).astype(np.float32)
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=8)
def _weighed_bins(config: FeatureConfig) -> tuple:
    """(first FFT bin the filterbank weighs, its rows from there to the last such bin)."""
    weights = mel_matrix(config)
    used = np.flatnonzero(weights.any(axis=1))
    return int(used[0]), np.ascontiguousarray(weights[used[0]:used[-1] + 1])


@functools.lru_cache(maxsize=8)
def _hann(window_samples: int) -> np.ndarray:
    n = np.arange(window_samples)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / window_samples)).astype(np.float32)


def log_mel(windows: np.ndarray, config: FeatureConfig, workers: int = 1) -> np.ndarray:
    """[..., samples] float32 waveform → [..., frames, mel_bins] float32 log-mel. `workers`:
    threads for the FFTs. Only the FFT bins the filterbank weighs are multiplied."""
    windows = np.asarray(windows, np.float32)
    if windows.shape[-1] < config.window_samples:
        raise ValueError(f"{windows.shape[-1]} samples is shorter than one frame "
                         f"({config.window_samples})")
    frames = np.lib.stride_tricks.sliding_window_view(
        windows, config.window_samples, axis=-1)[..., ::config.hop_samples, :]
    spectrum = scipy.fft.rfft(frames * _hann(config.window_samples), config.fft_length,
                              axis=-1, workers=workers)
    first, weights = _weighed_bins(config)
    magnitude = np.abs(spectrum[..., first:first + len(weights)])
    mel = magnitude.reshape(-1, len(weights)) @ weights
    mel += np.float32(config.log_offset)
    np.log(mel, out=mel)
    return mel.reshape(*frames.shape[:-1], config.mel_bins)
