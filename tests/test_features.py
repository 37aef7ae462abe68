import json

import numpy as np
import pytest
import tensorflow as tf

from earmark.model.features import FeatureConfig
from earmark.model.frontend import Frontend, log_mel
from earmark.model.windowing import count_windows


def test_defaults_follow_vggish_recipe():
    c = FeatureConfig()
    assert (c.sample_rate_hz, c.window_samples, c.hop_samples, c.fft_length) == (16000, 400, 160, 512)
    assert c.patch_shape == (96, 64)
    assert c.patch_samples == 15600 and c.patch_hop_samples == 15360


def test_json_round_trip_and_stable_hash():
    c = FeatureConfig(patch_hop_seconds=0.48)
    back = FeatureConfig.from_dict(json.loads(c.to_json()))
    assert back == c and back.hash() == c.hash()
    # the hash ignores the patch hop (a density choice) but not the recipe
    assert FeatureConfig().hash() == c.hash()
    assert FeatureConfig(mel_bins=32).hash() != c.hash()
    assert FeatureConfig().hash() == "961e4cf0b0c484e9"  # stable across runs and machines


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        FeatureConfig(mel_max_hz=9000)
    with pytest.raises(ValueError):
        FeatureConfig.from_dict({"bogus": 1})


# windows of 15 600 samples every 15 360 until one reaches the end (the last zero-padded)
@pytest.mark.parametrize("seconds,expected", [(0.05, 1), (0.96, 1), (0.975, 1), (1.0, 2),
                                              (1.95, 3), (5.0, 6)])
def test_patch_count_and_padding(seconds, expected):
    c = FeatureConfig()
    wave = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32)
    patches, starts, short = Frontend(c).patches(wave)
    assert patches.shape == (expected, 96, 64)
    assert count_windows(len(wave), c.patch_samples, c.patch_hop_samples) == expected
    assert short == (len(wave) < c.patch_samples)
    np.testing.assert_allclose(starts, np.arange(expected) * 0.96)


def test_overlapping_patches_for_labeling():
    c = FeatureConfig(patch_hop_seconds=0.48)
    patches, starts, _ = Frontend(c).patches(np.zeros(16000 * 3, np.float32))
    assert patches.shape[0] == 1 + int(np.ceil((48000 - 15600) / 7680))
    assert starts[1] == pytest.approx(0.48)


def test_whole_recording_patches_equal_per_window_log_mel():
    """Prepare cuts patches from one long log-mel; the model sees one window at a time."""
    c = FeatureConfig(patch_hop_seconds=0.48)
    wave = np.random.default_rng(1).standard_normal(16000 * 4).astype(np.float32)
    patches, starts, _ = Frontend(c).patches(wave)
    padded = np.pad(wave, (0, c.patch_samples))  # the last window runs past the end
    windows = np.stack([padded[int(round(s * 16000)):int(round(s * 16000)) + c.patch_samples]
                        for s in starts])
    per_window = log_mel(tf.constant(windows), c).numpy()
    assert np.abs(per_window - patches).max() < 1e-4


def test_log_mel_of_silence_is_log_offset_and_tone_lands_in_its_band():
    c = FeatureConfig()
    silent = log_mel(tf.zeros([c.patch_samples]), c).numpy()
    np.testing.assert_allclose(silent, np.log(0.01), rtol=1e-6)
    t = np.arange(c.patch_samples) / 16000
    tone = log_mel(tf.constant(np.sin(2 * np.pi * 1000 * t).astype(np.float32)), c).numpy()
    peak = tone.mean(axis=0).argmax()
    assert 0 <= peak < 64 and tone.mean(axis=0)[peak] > np.log(0.01) + 5
    assert abs(_band_centre_hz(peak, c) - 1000) < 120


def _band_centre_hz(band, c):
    mel = lambda hz: 1127.0 * np.log1p(hz / 700.0)
    edges = np.linspace(mel(c.mel_min_hz), mel(c.mel_max_hz), c.mel_bins + 2)
    return 700.0 * (np.exp(edges[band + 1] / 1127.0) - 1.0)
