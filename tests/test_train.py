"""`earmark train` on tiny synthetic data: a base per input preprocessing, every strategy, the exported model."""
import json
import os

import keras
import numpy as np
import pytest

from earmark.commands import train
from earmark.model import calibrate, export, image_bases
from earmark.model import train as training
from earmark.model.frontend import Frontend
from tests.fixtures import make_prepared, train_args

SMALL_PX = {"inception_v3": 75, "mobilenet_v2": 32, "efficientnet_b0": 32, "resnet50": 32,
            "vgg16": 32}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return make_prepared(str(tmp_path_factory.mktemp("prepared")))


def _meta(model_dir):
    with open(os.path.join(model_dir, export.META_FILE)) as f:
        return json.load(f)


# One base per input preprocessing the exported adapter carries ("tf", "caffe", built in):
# mobilenet_v2 and vgg16 share inception_v3's and resnet50's, and every base builds, pools
# and unfreezes in test_image_bases.py.
PREPROCESSING_KINDS = ("inception_v3", "resnet50", "efficientnet_b0")


@pytest.mark.slow
@pytest.mark.parametrize("name", PREPROCESSING_KINDS)
def test_frozen_trains_each_base_on_the_cache_and_exports(prepared, tmp_path, name, capsys):
    model_dir = tmp_path / "m"
    train.main(train_args(prepared, model_dir, tmp_path / "cache", "--strategy", "frozen",
                          base=name, px=SMALL_PX[name]))
    meta = _meta(model_dir)
    assert meta["strategy"]["used"] == "frozen"
    assert meta["training"]["bottleneck_cache"] is True
    assert meta["base"] == {"name": name, "input_px": SMALL_PX[name], "pooling": "multiscale",
                            "feature_dim": meta["base"]["feature_dim"]}
    assert meta["metrics"]["validation"]["accuracy"] >= 0.85, meta["metrics"]
    assert "not transfer learning" in capsys.readouterr().err   # frozen + none warns
    model, _ = export.load(str(model_dir))
    assert model.input_shape == (None, 15600)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["finetune", "scratch"])
def test_finetune_changes_only_the_top_blocks_and_scratch_changes_all(prepared, tmp_path,
                                                                      strategy):
    model_dir = tmp_path / "m"
    train.main(train_args(prepared, model_dir, tmp_path / "cache", "--strategy", strategy,
                          "--finetune-epochs", "2", "--finetune-layers", "1", "--epochs", "3"))
    meta = _meta(model_dir)
    assert meta["strategy"]["used"] == strategy
    model, _ = export.load(str(model_dir))
    trained = model.get_layer("embedder").get_layer("mobilenet_v2")
    fresh = image_bases.build_base("mobilenet_v2", 32, image_bases.WeightsInfo("none"), seed=0)
    first_conv = lambda m: m.get_layer("Conv1").get_weights()[0]   # noqa: E731
    top_conv = lambda m: m.get_layer("Conv_1").get_weights()[0]    # noqa: E731
    assert not np.allclose(top_conv(trained), top_conv(fresh))
    if strategy == "finetune":
        assert meta["strategy"]["phases"] == ["head on bottleneck cache",
                                              "fine-tune top 1 blocks"]
        np.testing.assert_array_equal(first_conv(trained), first_conv(fresh))
    else:
        assert meta["head"]["norm"] == "batchnorm"
        assert not np.allclose(first_conv(trained), first_conv(fresh))


def test_a_model_dir_holding_a_model_is_replaced_only_with_overwrite(tiny_model, tmp_path,
                                                                     capsys):
    """Refused before any training starts: an earlier round's model is never lost to a
    repeated command; a file is not a folder."""
    import shutil
    from tests.fixtures import one_line_error
    held = str(tmp_path / "m")
    shutil.copytree(tiny_model, held)
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    err = one_line_error(capsys, ["train", *train_args("no-such-data", held, tmp_path / "c")])
    assert "holds a model (model.json, model.keras); pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    (tmp_path / "f").write_text("")
    assert "is a file; give a folder" in one_line_error(
        capsys, ["train", *train_args("no-such-data", tmp_path / "f", tmp_path / "c")])
    # with --overwrite the check passes: the next complaint is the missing data
    assert "no-such-data" in one_line_error(
        capsys, ["train", *train_args("no-such-data", held, tmp_path / "c", "--overwrite")])


def test_auto_picks_frozen_for_small_data_and_documents_why():
    assert training.choose_strategy("auto", 500, False, 2).name == "frozen"
    assert training.choose_strategy("auto", 5000, False, 2) == training.StrategyChoice(
        "finetune", 2, training.choose_strategy("auto", 5000, False, 2).reason, if_time=True)
    assert training.choose_strategy("auto", 50000, False, 2).finetune_blocks == 4
    assert training.choose_strategy("auto", 5000, True, 2).name == "scratch"
    assert training.choose_strategy("frozen", 50000, False, 2).name == "frozen"


@pytest.mark.slow
def test_auto_fine_tunes_only_within_the_time_budget(prepared, tmp_path, monkeypatch, capsys):
    """auto on "enough" data: the frozen head first; fine-tuning is timed, said, and skipped
    when it would not fit in what --time-budget leaves (the model is then the frozen one);
    with room, it runs and is kept only if validation loss improves."""
    monkeypatch.setattr(training, "AUTO_FROZEN_MAX_EXAMPLES", 10)
    choose = training.choose_strategy   # as with pretrained weights (these tiny runs have none)
    monkeypatch.setattr(training, "choose_strategy", lambda s, n, _, b: choose(s, n, False, b))
    tight, roomy = tmp_path / "tight", tmp_path / "roomy"
    train.main(train_args(prepared, tight, tmp_path / "cache", "--time-budget", "0.001",
                          "--finetune-layers", "1", "--finetune-epochs", "2", "--epochs", "3"))
    assert _meta(tight)["strategy"]["used"] == "frozen"
    phases = _meta(tight)["strategy"]["phases"]
    assert phases[0] == "head on bottleneck cache" and len(phases) == 2
    assert phases[1].startswith("fine-tuning skipped: the frozen model took")
    assert "fine-tuning skipped" in capsys.readouterr().err
    model, _ = export.load(str(tight))
    fresh = image_bases.build_base("mobilenet_v2", 32, image_bases.WeightsInfo("none"), seed=0)
    trained = model.get_layer("embedder").get_layer("mobilenet_v2")
    np.testing.assert_array_equal(trained.get_layer("Conv_1").get_weights()[0],
                                  fresh.get_layer("Conv_1").get_weights()[0])
    train.main(train_args(prepared, roomy, tmp_path / "cache", "--time-budget", "30",
                          "--finetune-layers", "1", "--finetune-epochs", "2", "--epochs", "3"))
    meta = _meta(roomy)
    assert meta["training"]["timings_s"]["finetune_estimate_s"] > 0
    assert meta["strategy"]["phases"][1].startswith(("fine-tune top 1 blocks",
                                                     "fine-tuned top 1 blocks, not kept"))


@pytest.mark.slow
def test_second_run_reuses_the_bottleneck_cache_and_another_folder_adds_its_own(
        prepared, tmp_path, capsys):
    args = train_args(prepared, tmp_path / "m1", tmp_path / "cache", "--strategy", "frozen")
    train.main(args)
    (cache,) = os.listdir(tmp_path / "cache" / "bottlenecks")
    shard = tmp_path / "cache" / "bottlenecks" / cache / "train-00000-of-00001.tfrecord.gz"
    mtime = os.stat(shard).st_mtime_ns
    capsys.readouterr()
    # a round of verdicts added: the first folder's entry is reused, the new one computed;
    # labels merged by name in order of first appearance
    more = make_prepared(str(tmp_path / "more"), per_class=(2, 1, 0),
                         labels=["class_1", "new_label"])
    args[args.index("--quiet")] = "--seed"
    args.insert(args.index("--seed") + 1, "0")
    args += ["--data", more]
    train.main([a if a != str(tmp_path / "m1") else str(tmp_path / "m2") for a in args])
    assert "bottleneck cache hit" in capsys.readouterr().out
    assert os.stat(shard).st_mtime_ns == mtime
    assert len(os.listdir(tmp_path / "cache" / "bottlenecks")) == 2
    meta = _meta(tmp_path / "m2")
    assert meta["labels"] == ["class_0", "class_1", "new_label"]
    assert meta["training"]["data"] == [os.path.abspath(prepared), os.path.abspath(more)]
    assert meta["training"]["examples"] == {"train": 24 + 4, "validation": 8 + 2}
    # a different input size is a different cache entry
    train.main(train_args(prepared, tmp_path / "m3", tmp_path / "cache", "--strategy", "frozen",
                          px=40))
    assert len(os.listdir(tmp_path / "cache" / "bottlenecks")) == 3


@pytest.mark.slow
def test_augmentation_trains_through_the_base_and_multi_label_uses_sigmoid(prepared, tmp_path):
    train.main(train_args(prepared, tmp_path / "m", tmp_path / "cache", "--strategy", "frozen",
                          "--augment", "specaugment,mixup", "--multi-label", "--epochs", "4"))
    meta = _meta(tmp_path / "m")
    assert meta["strategy"]["phases"] == ["frozen through the base"]
    assert meta["activation"] == "sigmoid"
    model, _ = export.load(str(tmp_path / "m"))
    scores = model.predict(np.zeros((3, 15600), np.float32), verbose=0)
    assert scores.shape == (3, 2) and not np.allclose(scores.sum(axis=1), 1.0)


@pytest.mark.slow
def test_serving_model_runs_the_prepare_frontend_in_graph(prepared, tmp_path):
    """Train/serve parity: the pipeline's log-mel and the model's internal one agree."""
    train.main(train_args(prepared, tmp_path / "m", tmp_path / "cache", "--strategy", "frozen"))
    model, meta = export.load(str(tmp_path / "m"))
    config = export.feature_config(meta)
    rng = np.random.default_rng(0)
    t = np.arange(int(3.5 * config.sample_rate_hz)) / config.sample_rate_hz
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    pipeline_patches, _, _ = Frontend(config).patches(wave)
    windows = export.windows(wave, config)
    in_model = keras.Model(model.input, model.get_layer("log_mel").output)
    served = in_model.predict(windows, verbose=0)
    # 3.5 s: 3 whole windows and the zero-padded tail (model.windowing)
    assert served.shape == pipeline_patches.shape == (4, 96, 64)
    assert np.abs(served - pipeline_patches).max() < 1e-4
    # and the end-to-end scores from waveform equal those of the log-mel path
    np.testing.assert_allclose(model.predict(windows, verbose=0),
                               export.log_mel_model(model).predict(pipeline_patches, verbose=0),
                               atol=1e-4)


@pytest.mark.slow
def test_model_json_describes_the_model(prepared, tmp_path):
    train.main(train_args(prepared, tmp_path / "m", tmp_path / "cache", "--head", "auto"))
    meta = _meta(tmp_path / "m")
    for key in ("labels", "feature_config", "labeling_hop_seconds", "post_processing", "base",
                "weights", "strategy", "training", "metrics"):
        assert key in meta
    assert meta["format_version"] == 2 and "thresholds" not in meta  # in post_processing
    assert meta["strategy"] == {**meta["strategy"], "requested": "auto", "used": "frozen"}
    assert set(meta["post_processing"]) == set(meta["labels"]) == {"class_0", "class_1"}
    assert meta["weights"]["source"] == "none" and meta["weights"]["fingerprint"]
    assert meta["training"]["data_hash"] and export.window_spec(meta)[1] == 15600
    assert sorted(os.listdir(tmp_path / "m")) == ["history.json", "model.json", "model.keras"]
    # --head auto (the default): both heads' detectors calibrated, the better one kept
    rule = meta["head"]["rule"]
    assert [c["kind"] for c in rule["candidates"]][0] == "dropout" and len(rule["candidates"]) == 2
    f1, slack = calibrate.mean_event_f1(meta["calibration"])
    assert f1 == pytest.approx([c["event_f1"] for c in rule["candidates"]
                                if c["kind"] == meta["head"]["kind"]][0], abs=1e-4)
    figures = [(c["event_f1"], slack, c["accuracy"]) for c in rule["candidates"]]
    assert meta["head"]["kind"] == rule["candidates"][training.pick_head(figures)]["kind"]


def test_head_rule_keeps_the_best_events_and_breaks_ties_by_accuracy():
    from earmark.model.train import pick_head
    assert pick_head([(0.80, 0.01, 0.99), (0.90, 0.01, 0.90)]) == 1     # events first
    assert pick_head([(0.895, 0.01, 0.99), (0.90, 0.01, 0.90)]) == 0    # within the slack
    assert pick_head([(0.90, 0.01, 0.95), (0.90, 0.01, 0.95)]) == 0     # the earlier one
    assert pick_head([(None, 0.01, 0.90), (None, 0.01, 0.95)]) == 1     # no calibration
    assert pick_head([(None, 0.01, 0.99), (0.5, 0.01, 0.5)]) == 1       # a known F1 wins


def test_head_standardizes_tiny_features_and_ignores_dead_ones():
    from earmark.model.head import HeadConfig, build_head, feature_moments
    rng = np.random.default_rng(0)
    feats = (rng.normal(size=(64, 6)) * 1e-4).astype(np.float32)   # random-base scale
    feats[:, 5] = 0.0                                               # dead on training data
    mean, var = feature_moments(feats)
    assert var[5] > 0 and np.allclose(var[:5], feats[:, :5].var(0), rtol=1e-4)
    head = build_head(6, HeadConfig(2, dropout_rate=0.0), feats)
    norm = keras.Model(head.input, head.get_layer("standardize").output)
    out = norm.predict(np.concatenate([feats[:4], feats[:4] + 1e-6 * np.eye(6)[5]]), verbose=0)
    assert 0.3 < out[:, :5].std() < 3.0          # tiny features brought to unit scale
    assert np.abs(out[:, 5]).max() < 1.0         # a dead feature stays small


def test_model_package_never_imports_beam():
    """Training runs where Beam is absent: nothing under model/ may pull it in."""
    import subprocess
    import sys
    code = ("import sys; import earmark.model.train, earmark.model.evaluate, earmark.model.export, earmark.model.bottleneck, "
            "earmark.model.data, earmark.model.image_bases, earmark.model.head, earmark.model.adapter; "
            "assert 'apache_beam' not in sys.modules, 'apache_beam imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_train_takes_a_frozen_config_and_says_everything_through_its_callables(
        prepared, tmp_path, capsys):
    """model.train.train: one TrainConfig, progress to `log`, warnings to `warn`, nothing
    printed; a missing cache entry goes to `compute_bottlenecks` (the CLI's Beam runner),
    a complete one does not."""
    import dataclasses
    config = training.TrainConfig(
        data_dir=prepared, model_dir=str(tmp_path / "m"), base="mobilenet_v2", weights="none",
        strategy="frozen", head="dropout", input_px=32, epochs=2, batch_size=8,
        cache_dir=str(tmp_path / "cache"), progress_bars=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    calls, lines, warnings = [], [], []
    meta = training.train(config, log=lines.append, warn=warnings.append,
                          compute_bottlenecks=lambda *a: calls.append(a))
    (root, entry, spec, splits, feature_dim), = calls
    assert root == prepared and splits == ["train", "validation"] and feature_dim > 0
    assert entry.directory == os.path.join(str(tmp_path / "cache"), "bottlenecks", entry.key)
    assert entry.meta["key"] == entry.key and spec.input_px == 32
    assert meta["training"]["bottleneck_cache"] is True
    assert any("not transfer learning" in w for w in warnings)
    assert any(line.startswith("training summary") for line in lines)
    assert capsys.readouterr() == ("", "")
    calls.clear()
    training.train(dataclasses.replace(config, model_dir=str(tmp_path / "m2")),
                   log=lines.append, warn=warnings.append,
                   compute_bottlenecks=lambda *a: calls.append(a))
    assert calls == [] and f"bottleneck cache hit: {entry.directory}" in lines


def test_train_flags_build_the_config_with_the_same_defaults():
    from earmark.commands.train import build_arg_parser, config_from_args
    config = config_from_args(build_arg_parser().parse_args(["--data", "d", "--model-dir", "m"]))
    assert config == training.TrainConfig(data_dir="d", model_dir="m")
    config = config_from_args(build_arg_parser().parse_args(
        ["--data", "d", "--model-dir", "m", "--finetune-layers", "3", "--patience", "2",
         "--dropout", "0.1", "--no-cache", "--quiet", "--augment", "mixup"]))
    assert (config.finetune_blocks, config.patience_epochs, config.dropout_rate) == (3, 2, 0.1)
    assert not config.use_cache and not config.progress_bars and config.augment.mixup
