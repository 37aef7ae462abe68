"""Keras layers that live inside the exported model (registered for `safe_mode=True` loading).

`LogMel`: waveform windows [b, patch_samples] → log-mel [b, frames, mel_bins], by calling
`model.frontend.log_mel`, the very function `prepare` uses.

`SpectrogramToImage`: log-mel [b, frames, mel_bins] → base input [b, px, px, 3]:
standardize with the training split's mean/std (stored in the layer config), map ±3 std to
pixels 0..255 (clipped), lay out as an image (rows = mel bins, high frequencies on top,
columns = time), resize to px × px, copy to 3 channels, then the base's own preprocessing.
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from earmark.model.features import FeatureConfig
from earmark.model.frontend import log_mel

PIXELS_PER_STD = 127.5 / 3.0
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclasses.dataclass(frozen=True)
class InputStats:
    """Scalar log-mel statistics of the training split."""
    mean: float
    std: float

    @classmethod
    def from_array(cls, log_mels: np.ndarray) -> "InputStats":
        x = np.asarray(log_mels, np.float64)
        return cls(float(x.mean()), float(max(x.std(), 1e-6)))


@keras.saving.register_keras_serializable(package="earmark")
class LogMel(keras.layers.Layer):
    """[b, patch_samples] float32 waveform at the config's rate → [b, frames, mel_bins]."""

    def __init__(self, feature_config: dict, **kwargs):
        super().__init__(**kwargs)
        self.feature_config = dict(feature_config)
        self._config = FeatureConfig.from_dict(self.feature_config)

    def call(self, waveform):
        return log_mel(tf.cast(waveform, tf.float32), self._config)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._config.patch_shape

    def get_config(self):
        return {**super().get_config(), "feature_config": self.feature_config}


@keras.saving.register_keras_serializable(package="earmark")
class SpectrogramToImage(keras.layers.Layer):
    """Log-mel patch → the base's preprocessed 3-channel image (see module docstring)."""

    MODES = ("tf", "caffe", "none")

    def __init__(self, mean: float, std: float, size_px: int, preprocess_mode: str, **kwargs):
        super().__init__(**kwargs)
        if preprocess_mode not in self.MODES:
            raise ValueError(f"preprocess_mode must be one of {self.MODES}")
        self.mean, self.std = float(mean), float(std)
        self.size_px, self.preprocess_mode = int(size_px), preprocess_mode

    def call(self, x):
        z = (tf.cast(x, tf.float32) - self.mean) / self.std
        pixels = tf.clip_by_value(127.5 + PIXELS_PER_STD * z, 0.0, 255.0)
        image = tf.reverse(tf.transpose(pixels, [0, 2, 1]), axis=[1])[..., None]
        image = tf.image.resize(image, (self.size_px, self.size_px), method="bilinear")
        image = tf.tile(image, [1, 1, 1, 3])
        if self.preprocess_mode == "tf":
            return image / 127.5 - 1.0
        if self.preprocess_mode == "caffe":  # grey image: BGR flip is a no-op
            return image - tf.constant(CAFFE_MEAN_BGR, tf.float32)
        return image

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size_px, self.size_px, 3)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std,
                "size_px": self.size_px, "preprocess_mode": self.preprocess_mode}
