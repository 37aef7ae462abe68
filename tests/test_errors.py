"""User errors are one line, `earmark: error: what; how to fix`, and exit 2: outputs that
cannot be written, broken model dirs, unknown runners, bad manifests. And non-ASCII file
and label names go through prepare, train and label.

The model dirs are real: one small model trained on tones named `ronflé_1.flac` etc.
(which is also the non-ASCII test), copied and broken one way per test."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from earmark import cli
from earmark.model.segments import PostProcessing
from tests.fixtures import one_line_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = {"ronflé": 300.0, "bruit": 3000.0}


def write_tones(root, per_label, seconds, rate=16000, seed=0):
    """`root/<label>/<label>_<i>.flac`: a tone in a little noise per label."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    paths = []
    for label, hz in LABELS.items():
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for i in range(1, per_label + 1):
            x = 0.3 * np.sin(2 * np.pi * hz * t) + 0.02 * rng.normal(size=t.size)
            paths.append(os.path.join(root, label, f"{label}_{i}.flac"))
            sf.write(paths[-1], x.astype(np.float32), rate)
    return paths


@pytest.fixture(scope="module")
def ronfle(tmp_path_factory):
    """prepare → train on `ronflé/ronflé_1.flac`, ...: the corpus, prepared data and model."""
    root = tmp_path_factory.mktemp("ronfle")
    corpus, prepared, model = str(root / "corpus"), str(root / "prepared"), str(root / "model")
    write_tones(corpus, per_label=4, seconds=1.0)
    assert cli.main(["prepare", "--input", corpus, "--output", prepared, "--split", "50/50/0"]) == 0
    assert cli.main(["train", "--data", prepared, "--model-dir", model, "--base", "mobilenet_v2",
                     "--weights", "none", "--input-size", "32", "--epochs", "1",
                     "--cache-dir", str(root / "cache"), "--quiet", "--no-int8"]) == 0
    return {"corpus": corpus, "prepared": prepared, "model": model, "root": root}


@pytest.mark.slow
def test_non_ascii_names_go_through_prepare_train_and_label(ronfle, tmp_path):
    with open(os.path.join(ronfle["model"], "model.json"), encoding="utf-8") as f:
        meta = json.load(f)
    assert sorted(meta["labels"]) == ["bruit", "ronflé"]
    out = tmp_path / "labels"
    one = tmp_path / "nights"
    one.mkdir()
    shutil.copy(os.path.join(ronfle["corpus"], "ronflé", "ronflé_1.flac"), one / "nuit_été.flac")
    assert cli.main(["label", "--model", ronfle["model"], "--input", str(one),
                     "--output", str(out)]) == 0
    with open(out / "segments.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["file"] for r in rows} == {"nuit_été.flac"}


# --- outputs ---------------------------------------------------------------------------------

def test_output_that_is_a_file(ronfle, tmp_path, capsys):
    afile = tmp_path / "out.txt"
    afile.write_text("not a folder")
    err = one_line_error(capsys, ["prepare", "--input", ronfle["corpus"], "--output", str(afile)])
    assert "is a file, not a folder" in err
    err = one_line_error(capsys, ["label", "--model", ronfle["model"], "--input",
                                  ronfle["corpus"], "--output", str(afile)])
    assert "is a file, not a folder" in err
    assert afile.read_text() == "not a folder"


def test_output_below_a_file_cannot_be_created(ronfle, tmp_path, capsys):
    """The read-only case that holds for root too: a folder cannot be made under a file."""
    (tmp_path / "afile").write_text("x")
    err = one_line_error(capsys, ["prepare", "--input", ronfle["corpus"],
                                  "--output", str(tmp_path / "afile" / "out")])
    assert "cannot create it" in err and "give a folder you can write to" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a chmod 0555 folder anyway; the file-as-parent "
                           "test covers an output that cannot be written for root")
def test_output_in_a_read_only_folder(ronfle, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        err = one_line_error(capsys, ["label", "--model", ronfle["model"], "--input",
                                      ronfle["corpus"], "--output", str(ro)])
        assert "cannot write there" in err
        err = one_line_error(capsys, ["prepare", "--input", ronfle["corpus"],
                                      "--output", str(ro / "sub")])
        assert "cannot create it" in err
    finally:
        ro.chmod(0o755)


@pytest.mark.slow
def test_full_disk_is_one_line(tmp_path):
    """A real full disk: a 32 KiB tmpfs in a private mount namespace (`unshare`); prepare's
    shards do not fit, Beam fails inside a write step, the process exits 2 with one line."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux) to mount a tiny tmpfs")
    corpus = tmp_path / "corpus"
    write_tones(str(corpus), per_label=2, seconds=4.0)
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    out = mnt / "prepared"
    script = (f"mount -t tmpfs -o size=32k tmpfs {mnt} || exit 99; "
              f"exec {sys.executable} -m earmark prepare --input {corpus} --output {out}")
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    if r.returncode == 99 or "unshare:" in r.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {r.stderr.strip()[:200]}")
    errors = [l for l in r.stderr.splitlines() if l.startswith("earmark: error:")]
    assert r.returncode == 2, r.stderr[-2000:]
    # the file when the OSError names it, else the --output flag
    assert len(errors) == 1 and errors[0].startswith("earmark: error: no space left on the "
                                                     "disk writing ") and str(out) in errors[0]
    assert errors[0].endswith("; free space on it or write to another disk")
    assert "Traceback" not in r.stderr


# --- model dirs ------------------------------------------------------------------------------

def broken_model(ronfle, tmp_path, meta=None, keras_bytes=None, name="broken"):
    """A copy of the trained model dir with `meta` as model.json (a callable edits a copy of
    the real one) and/or `keras_bytes` as model.keras (b"" removes it)."""
    d = tmp_path / name
    shutil.copytree(ronfle["model"], d)
    if meta is not None:
        with open(d / "model.json", encoding="utf-8") as f:
            real = json.load(f)
        text = json.dumps(meta(real) if callable(meta) else meta)
        (d / "model.json").write_text(text, encoding="utf-8")
    if keras_bytes == b"":
        (d / "model.keras").unlink()
    elif keras_bytes is not None:
        (d / "model.keras").write_bytes(keras_bytes)
    return str(d)


def _without(key):
    return lambda m: {k: v for k, v in m.items() if k != key}


def _more_labels(m):
    return {**m, "labels": m["labels"] + ["toux"],
            "post_processing": {**m["post_processing"], "toux": PostProcessing().to_dict()}}


@pytest.mark.parametrize("meta,message", [
    ({}, "model.json has no 'labels'"),
    ([1, 2], "model.json is a JSON list, not an object"),
    (_without("labels"), "model.json has no 'labels'"),
    (_without("feature_config"), "model.json has no 'feature_config'"),
    (lambda m: {**m, "format_version": 1, "thresholds": {"bruit": "high"}},  # an older file
     "model.json 'thresholds.bruit' is 'high'; it must be a number in [0, 1]"),
    (lambda m: {**m, "post_processing": {l: {**pp, "smoothing_windows": 0}
                                         for l, pp in m["post_processing"].items()}},
     "smoothing_windows' is 0; it must be a whole number >= 1"),
    (lambda m: {**m, "background_labels": ["silence"]},
     "model.json 'background_labels' names 'silence', which is not one of its labels"),
    (_more_labels, "model.json 'labels' lists 3 labels but the model has 2 outputs"),
], ids=["empty-object", "list", "missing-labels", "missing-feature-config",
        "threshold-not-a-number", "smoothing-0", "unknown-background", "more-labels-than-outputs"])
def test_bad_model_json_is_one_line_before_labeling(ronfle, tmp_path, capsys, meta, message):
    model = broken_model(ronfle, tmp_path, meta)
    out = tmp_path / "out"
    err = one_line_error(capsys, ["label", "--model", model, "--input", ronfle["corpus"],
                                  "--output", str(out)])
    assert message in err and f"--model {model}" in err and "re-run 'earmark train'" in err
    assert not out.exists()  # refused before the output or the pipeline


def test_bad_model_json_is_one_line_in_evaluate_and_report(ronfle, tmp_path, capsys):
    model = broken_model(ronfle, tmp_path, {})
    for argv in (["evaluate", "--model", model, "--data", ronfle["prepared"]],
                 ["report", "--model", model, "--output", str(tmp_path / "r.html")]):
        assert "model.json has no 'labels'" in one_line_error(capsys, argv)


def test_more_labels_than_model_outputs_is_found_on_loading(ronfle, tmp_path, capsys):
    """model.json without `head` (nothing to compare in the file): the loaded model's output
    width is compared with the labels."""
    model = broken_model(ronfle, tmp_path, lambda m: _more_labels(_without("head")(m)))
    err = one_line_error(capsys, ["evaluate", "--model", model, "--data", ronfle["prepared"]])
    assert "model.json lists 3 labels but model.keras has 2 outputs" in err


def test_missing_keras_file(ronfle, tmp_path, capsys):
    model = broken_model(ronfle, tmp_path, keras_bytes=b"")
    for argv in (["label", "--model", model, "--input", ronfle["corpus"],
                  "--output", str(tmp_path / "out")],
                 ["evaluate", "--model", model, "--data", ronfle["prepared"]]):
        assert f"--model {model}: no model.keras there; re-run 'earmark train'" in \
            one_line_error(capsys, argv)


def test_corrupt_keras_file_is_not_file_not_found(ronfle, tmp_path, capsys):
    garbage = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    model = broken_model(ronfle, tmp_path, keras_bytes=garbage)
    for argv in (["label", "--model", model, "--input", ronfle["corpus"],
                  "--output", str(tmp_path / "out")],
                 ["evaluate", "--model", model, "--data", ronfle["prepared"]]):
        err = one_line_error(capsys, argv)
        assert "model.keras is corrupt" in err and "not found" not in err.lower()


# --- runner ----------------------------------------------------------------------------------

def test_unknown_runner(ronfle, tmp_path, capsys):
    for argv in (["prepare", "--input", ronfle["corpus"], "--output", str(tmp_path / "p")],
                 ["label", "--model", ronfle["model"], "--input", ronfle["corpus"],
                  "--output", str(tmp_path / "l")]):
        err = one_line_error(capsys, argv + ["--runner", "NoSuchRunner"])
        assert "--runner NoSuchRunner: not an Apache Beam runner" in err
        assert "DirectRunner" in err and "DataflowRunner" in err
    # the real process: exit status 2 and nothing but the one line on stderr
    r = subprocess.run([sys.executable, "-m", "earmark", "prepare", "--input", ronfle["corpus"],
                        "--output", str(tmp_path / "p"), "--runner", "Nope"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("earmark: error: --runner Nope: not an Apache Beam "
                                       "runner") and "\n" not in r.stderr.strip()


# --- manifests -------------------------------------------------------------------------------

@pytest.mark.parametrize("content,message", [
    ("path,label\nronflé/ronflé_1.flac,ronflé\n".encode("latin-1"),
     "is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"),
    ("path,label\nronflé/ronflé_1.flac,ronflé\nbruit/bruit_1.flac,bruit\n"
     "ronflé/ronflé_1.flac,bruit\n".encode(),
     "lines 2 and 4 give ronflé/ronflé_1.flac two labels ('ronflé', 'bruit')"),
    (b"path,label\nbruit/bruit_1.flac,bruit,extra\n",
     "line 2: 3 fields but the header has 2"),
], ids=["not-utf8", "one-file-two-labels", "extra-field"])
def test_bad_manifest(tmp_path, capsys, content, message):
    """Each is refused while reading the manifest, before any listed file is looked at."""
    manifest = tmp_path / "labels.csv"
    manifest.write_bytes(content)
    err = one_line_error(capsys, ["prepare", "--manifest", str(manifest),
                                  "--output", str(tmp_path / "out")])
    assert message in err, err


def test_a_metadata_csv_with_more_columns_reads_its_path_label_and_group(tmp_path, caplog):
    """Datasets ship metadata with more columns (ESC-50: fold, target, esc10, take): they
    are read past and named once in the log, never refused."""
    from earmark.pipelines import corpus
    manifest = tmp_path / "meta.csv"
    manifest.write_text("path,fold,label,target,group,take\n"
                        "a/1.wav,1,dog,0,src1,A\na/2.wav,2,dog,0,src1,B\nb/3.wav,1,rain,1,,A\n")
    with caplog.at_level("WARNING", logger="earmark.corpus"):
        rows = corpus.read_manifest(str(manifest))
    assert [(os.path.basename(r.path), r.label, r.key) for r in rows] == \
        [("1.wav", "dog", "src1"), ("2.wav", "dog", "src1"), ("3.wav", "rain", "b/3.wav")]
    (note,) = [r.getMessage() for r in caplog.records]
    assert "'fold', 'target', 'take' ignored" in note


def test_evaluate_manifest_not_utf8(ronfle, tmp_path, capsys):
    manifest = tmp_path / "clips.csv"
    manifest.write_bytes("path,label\nronflé/ronflé_1.flac,ronflé\n".encode("latin-1"))
    err = one_line_error(capsys, ["evaluate", "--model", ronfle["model"],
                                  "--manifest", str(manifest)])
    assert "is not UTF-8 text (byte 0xe9 on line 2)" in err
