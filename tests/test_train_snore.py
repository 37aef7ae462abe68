"""Real data end to end: 7/8 of the snore clips prepared and a VGG16 model (stand-in
weights) trained on them (conftest.snore_vgg16, shared with test_label), evaluated on the
held-out test split (done when accuracy >= 0.96), and train/serve parity on real
recordings."""
import json
import os

import keras
import numpy as np
import pytest

from earmark import cli
from earmark.model import audio, data, export

pytestmark = pytest.mark.slow  # trains on 700 of the shared snore clips


def test_snore_test_split_accuracy_reaches_published_results(snore_vgg16, capsys):
    prepared, model_dir = snore_vgg16["prepared"], snore_vgg16["model"]
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", model_dir, "--data", prepared]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "test" and report["examples"] >= 70
    assert report["accuracy"] >= 0.96, report
    with open(os.path.join(model_dir, "model.json")) as f:
        meta = json.load(f)
    assert meta["strategy"]["used"] == "frozen" and meta["training"]["bottleneck_cache"]
    assert meta["weights"]["file_sha256"] and meta["base"]["name"] == "vgg16"


def test_model_log_mel_equals_the_prepared_patches_on_real_clips(snore_vgg16):
    """Parity: prepare's log-mel (from the TFRecords) vs the model's in-graph log-mel on the
    same decoded audio differ by < 1e-4."""
    prepared, model_dir = snore_vgg16["prepared"], snore_vgg16["model"]
    model, meta = export.load(model_dir)
    config = export.feature_config(meta)
    split = data.read_split(data.open_prepared(prepared), "test")
    in_model = keras.Model(model.input, model.get_layer("log_mel").output)
    worst = 0.0
    for i in range(0, len(split), 13):   # a handful of clips, mono and stereo, 44.1/48 kHz
        with open(split.source[i], "rb") as f:
            wav, _, _ = audio.load_waveform(f.read(), config.sample_rate_hz, split.source[i],
                                            config.resample_quality)
        window = export.windows(wav, config)[:1]
        served = in_model.predict(window, verbose=0)[0]
        worst = max(worst, float(np.abs(served - split.log_mel[i]).max()))
    assert worst < 1e-4, worst


def test_raw_clip_route_agrees_with_the_prepared_route(snore_vgg16, tmp_path, capsys):
    prepared, model_dir = snore_vgg16["prepared"], snore_vgg16["model"]
    split = data.read_split(data.open_prepared(prepared), "test")
    labels = data.open_prepared(prepared).labels
    manifest = tmp_path / "test.csv"
    with open(manifest, "w") as f:
        f.write("path,label\n" + "".join(f"{s},{labels[l]}\n"
                                         for s, l in zip(split.source, split.label)))
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", model_dir, "--manifest", str(manifest),
                     "--report", str(tmp_path)]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["examples"] == len(split) and raw["accuracy"] >= 0.96
