"""Builders shared by several test modules (pytest fixtures stay in tests/conftest.py).

`make_prepared` writes what `earmark prepare` writes (features.json + GZIP TFRecord shards
of the real Example schema) without Beam, in well under a second: each class is a bright
band of mel bins at its own height over noise, so any working model separates them.
`train_args` are the flags of a quick `earmark train` run on it. `make_corpus` writes long
recordings of band noise the tiny model knows (class_0 low, class_1 high), one with a name
that needs escaping, one a stereo FLAC in a sub-folder, and one broken file;
`write_annotations` their labeled parts as one CSV table. `files_under` reads a folder's
files for byte-for-byte comparisons. `built_once` builds a folder once per test run for
every xdist worker (the expensive trained models that several test files read).
"""
import csv
import fcntl
import json
import os
import shutil

import numpy as np
import soundfile as sf
import tensorflow as tf

from earmark.model import data
from earmark.model.examples import make_example
from earmark.model.features import FeatureConfig
from tests.audio_fixtures import band_noise


def synthetic_patch(rng, label: int, n_classes: int, config=FeatureConfig()):
    frames, bins = config.patch_shape
    x = rng.normal(-6.0, 1.0, (frames, bins)).astype(np.float32)
    width = bins // (n_classes + 1)
    lo = width * label + width // 2
    x[:, lo:lo + width] += 4.0
    return x


def make_prepared(root, n_classes=2, per_class=(12, 4, 4), seed=0, labels=None,
                  patches_per_recording=1):
    """A prepared folder with `per_class` (train, validation, test) recordings per class."""
    config = FeatureConfig()
    labels = list(labels or [f"class_{i}" for i in range(n_classes)])
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for split, n in zip(data.SPLITS, per_class):
        path = os.path.join(root, f"{split}-00000-of-00001{data.SHARD_SUFFIX}")
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
            for c, name in enumerate(labels):
                for r in range(n):
                    key = f"{name}/{split}_{r}.wav"
                    for k in range(patches_per_recording):
                        patch = synthetic_patch(rng, c, len(labels), config)
                        w.write(make_example(patch, [c], [name], "/x/" + key, key, 0.96 * k,
                                             0.96 * (k + 1), False, config.hash()))
    with open(os.path.join(root, data.FEATURES_FILE), "w") as f:
        json.dump({"feature_config": config.to_dict(), "feature_config_hash": config.hash(),
                   "labels": labels, "split_fractions": {}}, f)
    return root


def train_args(data_dir, model_dir, cache_dir, *extra, base="mobilenet_v2", px=32, int8=False):
    """Flags for a quick synthetic `earmark train` run (weights none, small input, the dropout
    head alone: `--head auto` trains and calibrates two; pass it in `extra` to test that; no
    8-bit file unless `int8=None`, train's default, ships one)."""
    return ["--data", str(data_dir), "--model-dir", str(model_dir), "--base", base,
            "--weights", "none", "--input-size", str(px), "--cache-dir", str(cache_dir),
            "--epochs", "10", "--batch-size", "8", "--head", "dropout", "--quiet",
            *(["--no-int8"] if int8 is False else []), *extra]


RATE = 16000
ODD_NAME = "<b>&x.wav"   # must come out escaped everywhere
# the synthetic training classes are bright mel bands: class_0 low (~0.55-1.9 kHz), class_1
# high (~2-4.9 kHz); band noise there is what this tiny model knows
BANDS_HZ = {"class_0": (600.0, 1800.0), "class_1": (2200.0, 4600.0)}


def recording(parts, rng):
    """[(seconds, label or None)] → a waveform: band noise per label, faint noise between."""
    return np.concatenate([band_noise(s, RATE, BANDS_HZ[l], rng) if l else
                           (0.001 * rng.normal(size=int(s * RATE))).astype(np.float32)
                           for s, l in parts])


# the corpus' recordings: (seconds, label or None) parts
CORPUS = {"a.wav": [(2, "class_0"), (1.5, None), (2.5, "class_1"), (2, None)],
          ODD_NAME: [(1, None), (3, "class_1"), (1, None)],
          "night/c.flac": [(3, "class_0"), (2, None), (2, "class_1"), (2, "class_0")]}


def make_corpus(root):
    """Three recordings (one with a name that needs escaping, one a stereo FLAC in a
    sub-folder) and one broken file."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "night"), exist_ok=True)
    for name, parts in CORPUS.items():
        sf.write(os.path.join(root, name), recording(parts, rng), RATE)
    flac = os.path.join(root, "night", "c.flac")
    mono, _ = sf.read(flac, dtype="float32")
    sf.write(flac, np.stack([mono, mono / 2], axis=1), RATE)                 # stereo
    with open(os.path.join(root, "broken.wav"), "wb") as f:
        f.write(b"RIFF not really audio")
    return root


def write_annotations(path):
    """The corpus' labeled parts as one CSV file,start_s,end_s,label table."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "start_s", "end_s", "label"])
        for name, parts in CORPUS.items():
            t = 0.0
            for seconds, label in parts:
                if label:
                    writer.writerow([name, t, t + seconds, label])
                t += seconds
    return path


def files_under(folder) -> dict:
    """{path relative to folder: bytes} of every file under it: two folders compared
    byte for byte, or one before and after a command."""
    out = {}
    for d, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = f.read()
    return out


def esc10_fold_manifests(esc10_root, out_dir, folds=(("1", "2"), ("3",))) -> list:
    """Manifests (path,label) of ESC-10 by fold, never split at random: one per tuple of
    `folds` (default folds 1-2 to train on, fold 3 to test)."""
    with open(os.path.join(esc10_root, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    paths = []
    for group in folds:
        path = os.path.join(out_dir, f"esc10_folds_{'_'.join(group)}.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            w.writerows([os.path.join(esc10_root, r["path"]), r["label"]]
                        for r in rows if r["fold"] in group)
        paths.append(path)
    return paths


def built_once(tmp_path_factory, name, build):
    """`build(folder)` once per test run, by whichever xdist worker asks first, under a file
    lock; the others wait for it and get the same folder (pytest-xdist's recipe for session
    fixtures shared by workers). Its users only read it. → the folder (pathlib.Path)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                  # the run's folder, above each worker's own
    folder, done = base / name, base / f"{name}.done"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)    # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


def one_line_error(capsys, argv) -> str:
    """Run `earmark ARGV` in-process; it must exit 2 with one stderr line."""
    from earmark import cli
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("earmark: error: ") and "\n" not in err, err
    return err
