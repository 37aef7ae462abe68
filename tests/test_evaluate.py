"""`earmark evaluate`: metrics, thresholds, prepared data, raw clips, one-line errors."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from earmark import cli
from earmark.commands import train
from earmark.model import evaluate
from tests.fixtures import make_prepared, train_args


def test_metrics_match_hand_computed_values():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.7, 0.3]])
    labels = np.array([0, 0, 1, 1, 1])
    m = evaluate.metrics(probs, labels, ["a", "b"])
    assert m["accuracy"] == 0.8                                   # the last row is wrong
    assert m["confusion_matrix"]["rows_true_cols_predicted"] == [[2, 0], [1, 2]]
    assert m["per_class"]["a"] == {"precision": round(2 / 3, 4), "recall": 1.0,
                                   "f1": 0.8, "support": 2, "roc_auc": round(5 / 6, 4)}
    assert m["per_class"]["b"]["recall"] == round(2 / 3, 4)
    assert m["macro_f1"] == 0.8


def test_thresholds_keep_the_best_f1_and_prefer_0_5_on_its_plateau():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.45, 0.55], [0.3, 0.7]])
    labels = np.array([0, 0, 1, 1])
    t = evaluate.choose_thresholds(probs, labels, 3)
    # F1 = 1 for class 0 on (0.45, 0.8] and class 1 on (0.2, 0.55]: 0.5 lies on both plateaus
    assert t[0] == 0.5 and t[1] == 0.5 and t[2] == 0.5   # absent class keeps 0.5
    # positives scoring only 0.30-0.35: 0.5 would miss them, so the plateau's top is taken
    low = np.array([[0.9, 0.1], [0.85, 0.15], [0.7, 0.3], [0.65, 0.35]])
    assert evaluate.choose_thresholds(low, labels, 2)[1] == 0.3


def test_clip_score_is_the_mean_of_its_patches():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8]])
    clip, labels, keys = evaluate.aggregate(probs, np.array([0, 0, 1]), np.array(["x", "x", "y"]))
    np.testing.assert_allclose(clip, [[0.5, 0.5], [0.2, 0.8]])
    assert labels.tolist() == [0, 1] and keys.tolist() == ["x", "y"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    data_dir = make_prepared(str(root / "prepared"), patches_per_recording=2)
    train.main(train_args(data_dir, root / "model", root / "cache", "--epochs", "8"))
    return data_dir, str(root / "model")


def test_evaluate_prepared_split_prints_and_writes_the_report(trained, tmp_path, capsys):
    data_dir, model_dir = trained
    assert cli.main(["evaluate", "--model", model_dir, "--data", data_dir,
                     "--report", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 8 and report["patches"] == 16   # clips = mean of 2 patches
    assert report["accuracy"] >= 0.85
    for key in ("macro_f1", "per_class", "roc_auc_macro", "confusion_matrix", "at_thresholds"):
        assert key in report
    with open(tmp_path / "evaluation.json") as f:
        assert json.load(f)["accuracy"] == report["accuracy"]


def test_labels_not_matching_and_corrupt_model_are_one_line_errors(trained, tmp_path, capsys):
    data_dir, model_dir = trained
    other = make_prepared(str(tmp_path / "other"), labels=["dog", "cat"])
    assert cli.main(["evaluate", "--model", model_dir, "--data", other]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("earmark: error: labels of the model") and "\n" not in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.json", "history.json"):
        with open(os.path.join(model_dir, name)) as src, open(broken / name, "w") as dst:
            dst.write(src.read())
    (broken / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert cli.main(["evaluate", "--model", str(broken), "--data", data_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupt" in err and "\n" not in err
    assert cli.main(["evaluate", "--model", str(tmp_path), "--data", data_dir]) == 2
    assert "no model.json" in capsys.readouterr().err


def _tone_clips(root, rate=22050, per_class=6, seed=0):
    """Raw clips of two classes (low vs high tone in noise) in <label>/ folders."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, hz in (("low", 300.0), ("high", 3000.0)):
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for i in range(per_class):
            t = np.arange(int(rate * rng.uniform(0.5, 2.5))) / rate
            x = 0.3 * np.sin(2 * np.pi * hz * rng.uniform(0.9, 1.1) * t) + 0.02 * rng.normal(size=t.size)
            path = os.path.join(root, label, f"{i}.wav")
            sf.write(path, x.astype(np.float32), rate)
            rows.append((path, label))
    return rows


@pytest.mark.slow
def test_evaluate_raw_clips_runs_the_frontend_itself(tmp_path, capsys):
    """Prepared data made from clips by the frontend; raw clips of the same kind evaluated by
    the serving model (waveform in): the two routes must agree on this easy task."""
    from earmark.model import audio, data
    from earmark.model.examples import make_example
    from earmark.model.features import FeatureConfig
    from earmark.model.frontend import Frontend
    import tensorflow as tf
    config = FeatureConfig()
    fe = Frontend(config)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    labels = ["high", "low"]
    for split, seed in (("train", 1), ("validation", 2), ("test", 3)):
        rows = _tone_clips(str(tmp_path / f"clips_{split}"), seed=seed)
        path = str(prepared / f"{split}-00000-of-00001{data.SHARD_SUFFIX}")
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
            for p, label in rows:
                with open(p, "rb") as f:
                    wav, _, _ = audio.load_waveform(f.read(), config.sample_rate_hz, p)
                patches, starts, padded = fe.patches(wav)
                for patch, s in zip(patches, starts):
                    w.write(make_example(patch, [labels.index(label)], [label], p, p, s, s + 0.96,
                                         padded, config.hash()))
    with open(prepared / "features.json", "w") as f:
        json.dump({"feature_config": config.to_dict(), "labels": labels}, f)
    train.main(train_args(prepared, tmp_path / "m", tmp_path / "cache", "--epochs", "8"))
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(tmp_path / "m"),
                     "--input", str(tmp_path / "clips_test")]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["examples"] == 12 and raw["failed"] == []
    assert raw["accuracy"] >= 0.75
    assert cli.main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(prepared)]) == 0
    via_prepared = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "confusion_matrix", "roc_auc_macro"):
        assert raw[key] == via_prepared[key]
    with open(tmp_path / "manifest.csv", "w") as f:
        f.write("path,label\nclips_test/low/0.wav,low\nclips_test/high/0.wav,bird\n")
    assert cli.main(["evaluate", "--model", str(tmp_path / "m"),
                     "--manifest", str(tmp_path / "manifest.csv")]) == 2
    assert "['bird'] are not in the model" in capsys.readouterr().err


def _noise(seconds, rate, seed):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.normal(size=int(seconds * rate))).astype(np.float32)


def test_evaluate_lists_clips_as_prepare_does(trained, tmp_path, capsys):
    """--input lists every audio format prepare reads (Opus here) and skips what is not
    audio; a manifest may start with a BOM and carry a group column; a path escaping the
    manifest's folder is refused."""
    _, model_dir = trained
    clips = tmp_path / "clips"
    (clips / "class_0").mkdir(parents=True)
    (clips / "class_1").mkdir()
    sf.write(str(clips / "class_0" / "a.opus"), _noise(1.5, 48000, 0), 48000, format="OGG",
             subtype="OPUS")
    sf.write(str(clips / "class_1" / "b.flac"), _noise(1.5, 16000, 1), 16000)
    (clips / "class_1" / "notes.txt").write_text("not audio")
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", model_dir, "--input", str(clips),
                     "--report", str(tmp_path / "r1")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 2 and report["failed"] == []
    assert report["source"] == str(clips)
    manifest = tmp_path / "clips.csv"
    manifest.write_bytes("\ufeffpath,label,group\nclips/class_0/a.opus,class_0,night 1\n"
                         "clips/class_1/b.flac,class_1,night 2\n".encode("utf-8"))
    assert cli.main(["evaluate", "--model", model_dir, "--manifest", str(manifest),
                     "--report", str(tmp_path / "r2")]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 2
    (clips / "escape.csv").write_text("path,label\n../clips/class_0/a.opus,class_0\n")
    assert cli.main(["evaluate", "--model", model_dir,
                     "--manifest", str(clips / "escape.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "escapes the manifest's folder" in err and "\n" not in err


def test_evaluate_clips_reads_audio_through_the_callable_it_is_given(trained, tmp_path):
    """model.evaluate knows no file system: any path (gs:// here) is read by `read_bytes`."""
    from earmark.model.model_files import EVALUATION_FILE
    _, model_dir = trained
    local = tmp_path / "a.wav"
    sf.write(str(local), _noise(1.0, 16000, 2), 16000)
    read = []

    def read_bytes(path):
        read.append(path)
        if path.endswith("broken.wav"):
            raise OSError("no such object")
        return local.read_bytes()
    rows = [("gs://bucket/class_0/a.wav", "class_0"), ("gs://bucket/class_1/broken.wav", "class_1")]
    report = evaluate.evaluate_clips(model_dir, rows, "gs://bucket", read_bytes=read_bytes,
                                     report_dir=str(tmp_path / "r"))
    assert read == [p for p, _ in rows] and report["examples"] == 1
    assert report["failed"] == [{"path": "gs://bucket/class_1/broken.wav",
                                 "reason": "no such object"}]
    with open(tmp_path / "r" / EVALUATION_FILE) as f:
        assert json.load(f)["source"] == "gs://bucket"
