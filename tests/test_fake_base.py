"""A base registered in one place (`tests/fake_base.py`, one `register` call) runs through
`earmark prepare` → `train` → `label` like a built-in one, on generated band noise."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from earmark import cli
from earmark.model import base_registry
from tests import fake_base
from tests.audio_fixtures import band_noise

RATE = fake_base.SAMPLE_RATE_HZ
BANDS = {"low": (300.0, 900.0), "high": (3000.0, 6000.0)}


@pytest.fixture
def registered():
    fake_base.register()
    yield fake_base.SPEC
    base_registry.unregister(fake_base.NAME)


def test_the_fake_base_embeds_deterministically(registered):
    assert fake_base.NAME in base_registry.names("embedding")
    spec = base_registry.get(fake_base.NAME)
    a, b = spec.load(), spec.load()
    rng = np.random.default_rng(0)
    windows = np.stack([band_noise(1.0, RATE, BANDS["low"], rng),
                        band_noise(1.0, RATE, BANDS["high"], rng)])
    emb = a.embed(windows)
    assert emb.shape == (2, spec.embedding_dim)
    np.testing.assert_array_equal(emb, b.embed(windows))
    assert a.weights_checksum() == b.weights_checksum()
    assert emb[0, :4].sum() > emb[0, 4:8].sum() and emb[1, 4:8].sum() > emb[1, :4].sum()
    described = a.describe()
    assert (described["name"], described["kind"], described["feature_dim"]) == \
        (fake_base.NAME, "embedding", spec.embedding_dim)
    assert base_registry.from_description(described) is spec


def test_an_unregistered_base_is_refused():
    assert fake_base.NAME not in base_registry.names()
    with pytest.raises(KeyError, match="unknown base"):
        base_registry.get(fake_base.NAME)


def test_prepare_train_label_with_a_registered_base(registered, tmp_path, capsys):
    rng = np.random.default_rng(1)
    clips = tmp_path / "clips"
    for label, band in BANDS.items():
        os.makedirs(clips / label)
        for i in range(10):
            sf.write(str(clips / label / f"{label}_{i}.wav"), band_noise(2.0, RATE, band, rng), RATE)
    night = tmp_path / "night"
    night.mkdir()
    quiet = (0.001 * rng.normal(size=2 * RATE)).astype(np.float32)
    sf.write(str(night / "night.wav"), np.concatenate([
        band_noise(3.0, RATE, BANDS["low"], rng), quiet, band_noise(3.0, RATE, BANDS["high"], rng)]), RATE)
    prepared, model_dir, out = tmp_path / "prepared", tmp_path / "model", tmp_path / "labels"

    assert cli.main(["prepare", "--input", str(clips), "--output", str(prepared),
                     "--base", fake_base.NAME, "--split", "60/20/20"]) == 0
    with open(prepared / "features.json") as f:
        features = json.load(f)["feature_config"]
    assert (features["representation"], features["sample_rate_hz"], features["patch_seconds"]) \
        == ("waveform", RATE, 1.0)
    assert cli.main(["train", "--data", str(prepared), "--model-dir", str(model_dir),
                     "--base", fake_base.NAME, "--cache-dir", str(tmp_path / "cache"),
                     "--epochs", "30", "--quiet"]) == 0
    with open(model_dir / "model.json") as f:
        meta = json.load(f)
    assert meta["base"]["name"] == fake_base.NAME and meta["base"]["kind"] == "embedding"
    assert meta["base"]["family"] == "fake" and meta["serving"]["format"] == "keras"
    assert meta["weights"]["checksum"] == fake_base.SPEC.load().weights_checksum()
    assert meta["metrics"]["validation"]["accuracy"] >= 0.9, meta["metrics"]

    base_registry.unregister(fake_base.NAME)   # model.keras holds the base: label needs no registry
    assert cli.main(["label", "--model", str(model_dir), "--input", str(night),
                     "--output", str(out), "--scores"]) == 0
    with open(out / "run.json") as f:
        run = json.load(f)
    assert run["files_labeled"] == 1 and run["files_failed"] == 0
    assert os.path.isfile(out / "scores" / "night.wav.csv")
