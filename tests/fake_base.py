"""A base for tests: a few fixed convolutions on waveform windows, no weights file, no
download. What a new base takes, whole: a spec (`EmbeddingBaseSpec` + `load`) and a
`base_registry.Base`; `base_registry.register(SPEC)` makes every command know it.

    1-s windows at 16 kHz → 8 band-pass FIR filters (cosine-modulated Hann windows, 200 Hz
    to 6.4 kHz), each with both signs, ReLU (half-wave energy) → an 8-tap box filter →
    global average → 16 numbers: a coarse spectrum, enough to tell band noises apart.

The weights are computed, not learned, so two loads agree to the bit; the Keras model
holds only built-in layers, so it is saved inside `model.keras` and `earmark label` loads
it without this module.
"""
import hashlib

import numpy as np

from earmark.model import base_registry
from earmark.model.audio_bases import EmbeddingBaseSpec, _check_windows

NAME = "fake_conv"
SAMPLE_RATE_HZ = 16000
KERNEL = 129
STRIDE = 8
BANDS_HZ = tuple(200.0 * 2 ** (k * 5 / 7) for k in range(8))   # 200 Hz … 6.4 kHz


class FakeSpec(EmbeddingBaseSpec):
    def load(self, weights: str = "pretrained", seed: int = 0, **kwargs):
        return FakeBase(self, weights)


SPEC = FakeSpec(name=NAME, family="fake", sample_rate_hz=SAMPLE_RATE_HZ,
                window_samples=SAMPLE_RATE_HZ, embedding_dim=2 * len(BANDS_HZ),
                licence="MIT", commercial_use=True, keras_native=True,
                install="(tests/fake_base.py: nothing to install)")


def band_kernels() -> np.ndarray:
    """[KERNEL, 1, 2 · bands]: each band-pass filter, then its negative."""
    t = np.arange(KERNEL) - KERNEL // 2
    window = np.hanning(KERNEL)
    bands = [np.cos(2 * np.pi * f * t / SAMPLE_RATE_HZ) * window for f in BANDS_HZ]
    bands = [b / np.abs(b).sum() for b in bands]
    return np.stack(bands + [-b for b in bands], axis=1)[:, None, :].astype(np.float32)


def box_kernel(channels: int, taps: int = 8) -> np.ndarray:
    """[taps, channels, channels]: every channel averaged over `taps` steps on its own."""
    return (np.eye(channels, dtype=np.float32)[None] / taps).repeat(taps, axis=0)


class FakeBase(base_registry.Base):
    def __init__(self, spec: FakeSpec, weights: str = "pretrained"):
        import keras
        self.spec, self.weights = spec, weights
        dim = spec.embedding_dim
        wave = keras.Input((spec.window_samples,), name="waveform")
        x = keras.layers.Reshape((spec.window_samples, 1), name="channel")(wave)
        bands = keras.layers.Conv1D(dim, KERNEL, strides=STRIDE, padding="same", use_bias=False,
                                    activation="relu", name="bands")
        box = keras.layers.Conv1D(dim, 8, strides=8, use_bias=False, name="box")
        x = keras.layers.GlobalAveragePooling1D(name="pool")(box(bands(x)))
        self._model = keras.Model(wave, x, name=spec.name)
        bands.set_weights([band_kernels()])
        box.set_weights([box_kernel(dim)])

    def keras_model(self):
        return self._model

    def weights_checksum(self) -> str:
        h = hashlib.sha256()
        for w in self._model.weights:
            h.update(np.ascontiguousarray(np.asarray(w.numpy(), np.float32)).tobytes())
        return h.hexdigest()

    def embed(self, windows) -> np.ndarray:
        windows = _check_windows(windows, self.spec)
        parts = [np.asarray(self._model(windows[i:i + 64], training=False))
                 for i in range(0, len(windows), 64)]
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.embedding_dim), np.float32)


def register():
    """The one call that makes `fake_conv` a base (idempotent)."""
    return base_registry.register(SPEC)
