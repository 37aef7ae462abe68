"""The log-mel frontend, written once in TensorFlow ops.

The prepare pipeline runs it on whole recordings; the exported model runs the very same
`log_mel` inside its graph on waveform windows, so train and serve features agree.

Recipe (all sizes from `FeatureConfig`): mono waveform at `sample_rate_hz` → STFT with a
periodic Hann window of `window_samples`, hop `hop_samples`, FFT `fft_length`, no centre
padding → magnitude → HTK mel filterbank (`mel_bins`, `mel_min_hz`..`mel_max_hz`) →
log(mel + `log_offset`) → patches of `patch_frames` frames every `patch_hop_frames` frames.
"""
import numpy as np
import tensorflow as tf

from earmark.model import windowing
from earmark.model.features import FeatureConfig


def mel_matrix(config: FeatureConfig) -> tf.Tensor:
    """[fft_length // 2 + 1, mel_bins] HTK-mel triangular filterbank."""
    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=config.mel_bins,
        num_spectrogram_bins=config.fft_length // 2 + 1,
        sample_rate=config.sample_rate_hz,
        lower_edge_hertz=config.mel_min_hz,
        upper_edge_hertz=config.mel_max_hz,
    )


def log_mel(waveform: tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """[..., samples] float32 waveform → [..., frames, mel_bins] log-mel spectrogram."""
    stft = tf.signal.stft(
        waveform,
        frame_length=config.window_samples,
        frame_step=config.hop_samples,
        fft_length=config.fft_length,
        window_fn=tf.signal.hann_window,
        pad_end=False,
    )
    mel = tf.tensordot(tf.abs(stft), mel_matrix(config), axes=1)
    return tf.math.log(mel + config.log_offset)


class Frontend:
    """Waveform → log-mel patches, compiled once per config (cheap to call per file).
    For a `waveform` config the patches are the raw windows (the base does its own frontend)."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        if config.is_waveform:
            return
        # a concrete function skips tf.function's per-call dispatch (-20 % CPU per file)
        self._fn = tf.function(
            self._patches, input_signature=[tf.TensorSpec([None], tf.float32)]
        ).get_concrete_function()

    def _patches(self, waveform):
        frames = log_mel(waveform, self.config)
        return tf.signal.frame(frames, self.config.patch_frames, self.config.patch_hop_frames, axis=0)

    def patches(self, waveform: np.ndarray):
        """Mono float32 waveform at the config's rate → (patches [n, frames, mel_bins] or,
        waveform configs, windows [n, patch_samples], start seconds [n], whether the recording
        is shorter than one patch). The windows are `model.windowing`'s: the last one is
        zero-padded past the recording's end."""
        c = self.config
        waveform = np.asarray(waveform, np.float32)
        short = len(waveform) < c.patch_samples
        if c.is_waveform:
            out = windowing.frame_windows(waveform, c.patch_samples, c.patch_hop_samples)
        else:  # log-mel frames of the padded recording fall on every window's own frames
            padded = windowing.pad_for_windows(waveform, c.patch_samples, c.patch_hop_samples)
            out = self._fn(tf.constant(padded)).numpy()
        starts = np.arange(out.shape[0]) * c.patch_hop_seconds
        return out, starts, short
