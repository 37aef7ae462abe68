"""Every path a user passes is checked before it is opened, as corpus inputs are: a FIFO
blocks its reader for good and a link to /dev/zero never ends (it grew earmark to 23 GB),
so each is a one-line `earmark: error:` naming the flag, and a file is read no further than
its kind's bound (`model.file_kinds`).

FIFOs and device links in subprocesses with a time limit: a hang fails its test (after 60 s)
instead of stopping the suite."""
import json
import os
import subprocess
import sys

import pytest

from earmark.model import file_kinds
from earmark.model.errors import UserError
from earmark.pipelines import corpus, fs
from tests.audio_fixtures import tone, write
from tests.prepared import read_dead_letter
from tests.test_model_card import card_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 60


def earmark(*argv):
    """`earmark ARGV` in a subprocess → CompletedProcess; a run past LIMIT_S fails the test."""
    argv = [str(a) for a in argv]
    try:
        return subprocess.run([sys.executable, "-m", "earmark", *argv], cwd=REPO,
                              capture_output=True, text=True, timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"earmark {' '.join(argv)} still ran after {LIMIT_S} s: it opened a "
                    "file that never ends")


def one_line_error(run, flag) -> str:
    """Exit 2 and one stderr line, `earmark: error: FLAG ...`."""
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"earmark: error: {flag} "), run.stderr[-2000:]
    return lines[0]


def fifo(path) -> str:
    os.mkfifo(path)
    return str(path)


# --- the command line, end to end -----------------------------------------------------------

def test_prepare_manifest_that_is_a_fifo(tmp_path):
    err = one_line_error(earmark("prepare", "--manifest", fifo(tmp_path / "m.csv"),
                                 "--output", tmp_path / "out"), "--manifest")
    assert "a FIFO (named pipe); not opened" in err and "256 MB" in err


def test_prepare_manifest_that_links_to_dev_zero(tmp_path):
    os.symlink("/dev/zero", tmp_path / "m.csv")
    err = one_line_error(earmark("prepare", "--manifest", tmp_path / "m.csv",
                                 "--output", tmp_path / "out"), "--manifest")
    assert "'/dev/zero', a device file; not opened" in err


def test_label_model_json_that_is_a_fifo(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    fifo(model / "model.json")
    err = one_line_error(earmark("label", "--model", model, "--input", tmp_path,
                                 "--output", tmp_path / "out"), "--model")
    assert "model.json: a FIFO (named pipe); not opened" in err


def test_label_model_file_that_is_a_fifo(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps(card_dict()))
    fifo(model / "model.keras")
    err = one_line_error(earmark("label", "--model", model, "--input", tmp_path,
                                 "--output", tmp_path / "out"), "--model")
    assert "model.keras: a FIFO (named pipe); not opened" in err


def test_prepare_annotation_table_that_is_a_fifo_is_a_bad_table(tmp_path):
    """The FIFO table is dead-lettered and the recording it names left out; the run
    finishes with the rest."""
    rec, tables, out = tmp_path / "rec", tmp_path / "tables", tmp_path / "out"
    rec.mkdir(), tables.mkdir()
    for name in ("a.wav", "b.wav"):
        write(str(rec / name), tone(3.0, 16000), 16000)
    (tables / "a.txt").write_text("0.5\t1.5\tsnore\n")
    fifo(tables / "b.txt")
    run = earmark("prepare", "--input", rec, "--annotations", tables, "--output", out)
    assert run.returncode == 0, run.stderr[-2000:]
    dead = {(os.path.basename(d["path"]), d["reason"]) for d in read_dead_letter(str(out))}
    assert dead == {("b.txt", "not_a_regular_file"), ("b.wav", "unusable_annotations")}


def test_prepare_annotations_file_that_is_a_fifo(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    write(str(rec / "a.wav"), tone(1.0, 16000), 16000)
    err = one_line_error(earmark("prepare", "--input", rec, "--annotations",
                                 fifo(tmp_path / "a.csv"), "--output", tmp_path / "out"),
                         "--annotations")
    assert "a FIFO (named pipe); not opened" in err


def test_train_data_whose_features_json_is_a_fifo(tmp_path):
    data = tmp_path / "prepared"
    data.mkdir()
    fifo(data / "features.json")
    err = one_line_error(earmark("train", "--data", data, "--model-dir", tmp_path / "model"),
                         "--data")
    assert "features.json: a FIFO (named pipe); not opened" in err


def test_train_weights_that_is_a_fifo(tmp_path):
    from tests.fixtures import make_prepared, train_args
    data = make_prepared(str(tmp_path / "prepared"), per_class=(2, 1, 0))
    argv = train_args(data, tmp_path / "model", tmp_path / "cache", "--epochs", "1")
    argv[argv.index("--weights") + 1] = fifo(tmp_path / "w.weights.h5")
    err = one_line_error(earmark("train", *argv), "--weights")
    assert "a FIFO (named pipe); not opened" in err


# --- the checks ------------------------------------------------------------------------------

def test_a_file_over_its_bound_is_not_read(tmp_path, monkeypatch):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "a.wav,snore\n" * 100)
    monkeypatch.setattr(file_kinds, "MAX_TABLE_BYTES", 1000)
    with pytest.raises(UserError, match=r"^--manifest .*: 1,211 bytes, over the 1,000 bytes "
                                         r"limit for a manifest; not read"):
        corpus.read_manifest(str(manifest))


def test_a_file_that_holds_more_than_its_size_says_is_read_only_to_the_bound():
    """/proc files say 0 bytes; the read stops one byte past the bound."""
    with pytest.raises(UserError, match="more bytes than it reported, over the 10 bytes limit"):
        fs.read_user_file("/proc/self/status", "--manifest /proc/self/status", 10, "a manifest")


def test_gcs_objects_are_bounded_by_their_metadata(monkeypatch):
    monkeypatch.setattr(fs, "stat_entry", lambda path: fs.FileEntry(path, 300 * file_kinds.MB))
    monkeypatch.setattr(fs, "read_bytes", lambda path: pytest.fail("read a file over its bound"))
    with pytest.raises(UserError, match=r"^--manifest gs://b/m.csv: 314,572,800 bytes, over "
                                         "the 256 MB limit"):
        fs.read_user_file("gs://b/m.csv", "--manifest gs://b/m.csv", file_kinds.MAX_TABLE_BYTES,
                          "a manifest")


def test_stat_entry_and_the_model_check_share_one_classification(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero")
    entry = fs.stat_entry(str(tmp_path / "zero"))
    assert (entry.problem, entry.detail) == (
        "not_a_regular_file", "a symbolic link to '/dev/zero', a device file; not opened")
    with pytest.raises(UserError, match=r"^--weights x: a symbolic link to '/dev/zero', a "
                                         "device file; not opened; pass"):
        file_kinds.check_regular_file(str(tmp_path / "zero"), "--weights x")


def test_a_proc_file_cannot_be_opened_for_decoding():
    """Its size is unknown: an OSError here, not an 'Exception ignored from cffi callback'
    traceback from inside libsndfile's length callback."""
    with pytest.raises(OSError, match="cannot seek to its end"):
        fs.open_seekable("/proc/self/status")
