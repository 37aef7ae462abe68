"""Every input accounted for, whatever its name or kind: names with glob characters,
spaces and Unicode are data; FIFOs, devices, dangling links and link loops are
dead-lettered without being opened; labels come from the first folder under the root;
a manifest naming a file twice counts it once. Real commands, in subprocesses with a time
limit, since a FIFO opened for reading would block for ever."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tests.audio_fixtures import tone, write

pytestmark = pytest.mark.slow  # Beam pipelines end to end: the full suite, not the quick loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_S = 240  # a hang fails the test instead of stalling the suite


def earmark(*args):
    proc = subprocess.run([sys.executable, "-m", "earmark", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def read_dead(out):
    with open(os.path.join(out, "dead_letter.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def hostile_corpus(root):
    """A class-folder corpus under a root named like a glob, with every kind of bad entry.
    → {relative key: expected dead-letter reason or None (labeled)}."""
    os.makedirs(root)
    files = {"snore/a [1].wav": None, "snore/nuit été/b*.flac": None,
             "snore/sub/dir.wav/x.wav": None, "not snore/{c},d?.wav": None,
             "not snore/e.wav": None}
    for key in files:
        os.makedirs(os.path.dirname(os.path.join(root, key)), exist_ok=True)
        write(os.path.join(root, key), tone(2.0, 16000), 16000,
              "FLAC" if key.endswith(".flac") else "WAV")
    write(os.path.join(root, "stray.wav"), tone(1.0, 16000), 16000)  # no label folder
    os.mkfifo(os.path.join(root, "snore", "pipe.wav"))
    os.symlink("/dev/zero", os.path.join(root, "snore", "zero.wav"))
    os.symlink("gone.wav", os.path.join(root, "snore", "dangling.wav"))
    os.symlink("loop.wav", os.path.join(root, "snore", "loop.wav"))
    files.update({"stray.wav": "not_in_a_label_folder", "snore/pipe.wav": "not_a_regular_file",
                  "snore/zero.wav": "not_a_regular_file", "snore/dangling.wav": "dangling_link",
                  "snore/loop.wav": "symlink_loop"})
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("inputs") / "glob[1] corpus")
    return root, hostile_corpus(root)


def test_prepare_accounts_for_every_file_and_never_opens_a_fifo(corpus, tmp_path):
    root, files = corpus
    out = str(tmp_path / "prepared")
    earmark("prepare", "--input", root, "--output", out, "--split", "100/0/0")
    with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
    # a file directly in the root is not part of a clip corpus: not matched at all
    files = {k: v for k, v in files.items() if v != "not_in_a_label_folder"}
    bad = {k: v for k, v in files.items() if v}
    assert stats["files_matched"] == len(files)
    assert stats["files_ok"] == len(files) - len(bad) and stats["files_failed"] == len(bad)
    dead = {os.path.relpath(d["path"], root): d["reason"] for d in read_dead(out)}
    assert dead == bad
    # labels: the first folder under the root, whatever lies below it
    with open(os.path.join(out, "features.json")) as f:
        assert json.load(f)["labels"] == ["not snore", "snore"]
    assert stats["splits"]["train"]["snore"]["files"] == 3
    with open(os.path.join(out, "recordings.jsonl")) as f:
        keys = {json.loads(line)["key"] for line in f}
    assert keys == {k for k, v in files.items() if v is None}


def test_label_accounts_for_every_file_and_names_are_data(corpus, tiny_model, tmp_path):
    root, files = corpus
    out = str(tmp_path / "labels")
    proc = earmark("label", "--model", tiny_model, "--input", root, "--output", out,
                   "--formats", "csv,raven,audacity,jsonl")
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    unreadable = {k: v for k, v in files.items() if v and v != "not_in_a_label_folder"}
    assert run["files_matched"] == len(files)
    assert run["files_labeled"] + run["files_failed"] == len(files)
    assert {d["file"]: d["reason"] for d in read_dead(out)} == unreadable
    for key in (k for k, v in files.items() if v in (None, "not_in_a_label_folder")):
        assert os.path.isfile(os.path.join(out, "raven", key + ".selections.txt")), key
    assert "matched" in proc.stdout


def test_a_file_listed_twice_in_a_manifest_counts_once(tiny_model, tmp_path):
    clip = write(str(tmp_path / "clip[a].wav"), tone(3.0, 16000), 16000)
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([["path"], ["clip[a].wav"], [clip], ["clip[a].wav"]])
    out = str(tmp_path / "labels")
    earmark("label", "--model", tiny_model, "--manifest", str(manifest), "--output", out,
            "--incremental")
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    # three rows, one file (relative and absolute spellings of the same path)
    assert (run["files_matched"], run["files_labeled"], run["files_failed"]) == (1, 1, 0)
    with open(os.path.join(out, "ledger.json")) as f:
        versions = [e["version"] for e in json.load(f)["files"].values()]
    assert versions and all(v[0].isdigit() for v in versions), versions  # size:mtime, never "missing"
