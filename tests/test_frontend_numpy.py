"""The numpy log-mel frontend (the 8-bit serving path's) computes what the TensorFlow one
computes, on real audio and on feature settings other than the defaults."""
import numpy as np
import pytest

from earmark.model import audio, frontend, frontend_numpy, windowing
from earmark.model.features import FeatureConfig
from tests.shared import shared_path

CONFIGS = {
    "default": FeatureConfig(),
    "22 kHz, 128 bins, 46 ms frames": FeatureConfig(
        sample_rate_hz=22050, mel_bins=128, mel_min_hz=50.0, mel_max_hz=11000.0,
        window_seconds=0.046, hop_seconds=0.023, patch_seconds=1.5, patch_hop_seconds=0.75),
    "8 kHz, 32 bins, odd window": FeatureConfig(
        sample_rate_hz=8000, mel_bins=32, mel_min_hz=200.0, mel_max_hz=3900.0,
        window_seconds=0.03, hop_seconds=0.015, log_offset=0.001),
}


def windows_of(name: str, config: FeatureConfig) -> np.ndarray:
    with open(shared_path("data", "sonicpi", name), "rb") as f:
        wav, _, _ = audio.load_waveform(f.read(), config.sample_rate_hz, name)
    return windowing.frame_windows(wav, config.patch_samples, config.patch_hop_samples)


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_numpy_log_mel_matches_tensorflow(config):
    windows = np.concatenate([windows_of("ambi_choir.flac", config)[:12],
                              np.zeros((1, config.patch_samples), np.float32)])  # silence too
    ours = frontend_numpy.log_mel(windows, config, workers=2)
    theirs = frontend.log_mel(windows, config).numpy()
    assert ours.dtype == np.float32 and ours.shape == theirs.shape == (
        len(windows), config.patch_frames, config.mel_bins)
    assert np.abs(ours - theirs).max() < 1e-4
    np.testing.assert_allclose(frontend_numpy.mel_matrix(config),
                               frontend.mel_matrix(config).numpy(), atol=5e-5)  # TF: float32 math


def test_numpy_log_mel_of_no_windows_and_of_too_short_input():
    config = FeatureConfig()
    assert frontend_numpy.log_mel(np.zeros((0, config.patch_samples), np.float32),
                                  config).shape == (0, config.patch_frames, config.mel_bins)
    with pytest.raises(ValueError, match="shorter than one frame"):
        frontend_numpy.log_mel(np.zeros((2, 100), np.float32), config)
