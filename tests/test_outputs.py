"""Writes stay inside `--output`; runs never mix into a used folder; incremental labeling is
transactional (GitHub issue 11, items 1-3). Real corpora, a real (tiny) trained model,
DirectRunner, real subprocesses killed with SIGKILL."""
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import apache_beam as beam
import numpy as np
import pytest
import soundfile as sf

from earmark import cli
from earmark.model import data
from earmark.model.errors import UserError
from earmark.pipelines import label, ledger, outputs, prepare
from tests.audio_fixtures import band_noise, tone, write
from tests.prepared import load_json
from tests.fixtures import files_under

pytestmark = pytest.mark.slow  # Beam pipelines end to end: the full suite, not the quick loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE = 16000
FORMATS = "csv,raven,audacity,jsonl"
# the tiny model's classes are bright mel bands (tests/test_train_data.py): class_0 low, class_1 high
BANDS_HZ = {"class_0": (600.0, 1800.0), "class_1": (2200.0, 4600.0)}


def recording(parts, seed) -> np.ndarray:
    """[(seconds, label or None)] → band noise per label, faint noise between."""
    rng = np.random.default_rng(seed)
    return np.concatenate([band_noise(s, RATE, BANDS_HZ[l], rng) if l else
                           (0.001 * rng.normal(size=int(s * RATE))).astype(np.float32)
                           for s, l in parts])


def save(path, parts, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, recording(parts, seed), RATE)
    return path


def make_corpus(root):
    """Two recordings with segments of both classes, in sub-folders, and a broken file."""
    save(os.path.join(root, "room_a", "one.wav"), [(2, "class_0"), (1.5, None), (2, "class_1")], 1)
    save(os.path.join(root, "room_b", "two.flac"), [(1, None), (2.5, "class_1"), (1, None),
                                                    (2, "class_0")], 2)
    with open(os.path.join(root, "room_b", "broken.wav"), "wb") as f:
        f.write(b"RIFF not really audio")
    return root


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


def run_label(model_dir, out, *extra, source=None):
    return label.main(["--model", model_dir, *(extra if source is None else ("--input", source, *extra)),
                       "--output", str(out), "--formats", FORMATS])


def read(path, mode="rb"):
    with open(path, mode) as f:
        return f.read()


# --- 1. writes stay inside --output ---------------------------------------------------

def test_manifest_paths_outside_its_folder_are_written_inside_the_output(model, tmp_path):
    """Absolute paths (two files of one name in two folders) and a relative one: every
    per-recording file lands inside --output, named by `outputs.recording_name`;
    sources.csv maps the names back; nothing outside --output changes."""
    ext_a = save(str(tmp_path / "elsewhere" / "a" / "rec.flac"), [(2, "class_0"), (2, None)], 3)
    ext_b = save(str(tmp_path / "elsewhere" / "b" / "rec.flac"), [(2, "class_1"), (1, None)], 4)
    save(str(tmp_path / "m" / "inside" / "x.wav"), [(1, None), (2, "class_1")], 5)
    manifest = tmp_path / "m" / "list.csv"
    manifest.write_text(f"path\n{ext_a}\n{ext_b}\ninside/x.wav\n")
    out = tmp_path / "out"
    before = files_under(tmp_path)
    stats = label.main(["--model", model, "--manifest", str(manifest), "--output", str(out),
                        "--formats", FORMATS, "--scores"])
    assert stats["files_labeled"] == 3
    after = files_under(tmp_path)
    outside = {p: h for p, h in after.items() if not p.startswith("out" + os.sep)}
    assert outside == before, "a file outside --output was written or changed"

    names = {src: f"external/{hashlib.sha256(src.encode()).hexdigest()[:12]}/rec.flac"
             for src in (ext_a, ext_b)}
    assert len(set(names.values())) == 2
    assert outputs.recording_name(ext_a, ext_a) == names[ext_a]
    for name in [*names.values(), "inside/x.wav"]:
        for folder, suffix in (("raven", ".selections.txt"), ("audacity", ".txt"), ("scores", ".csv")):
            assert os.path.isfile(out / folder / (name + suffix)), (folder, name)
    with open(out / "sources.csv", newline="") as f:
        sources = list(csv.DictReader(f))
    assert sources == sorted([{"name": names[ext_a], "source": ext_a},
                              {"name": names[ext_b], "source": ext_b},
                              {"name": "inside/x.wav", "source": str(tmp_path / "m" / "inside" / "x.wav")}],
                             key=lambda r: r["name"])
    # segments.csv keeps the manifest's own path in its file column
    with open(out / "segments.csv", newline="") as f:
        files = {r["file"] for r in csv.DictReader(f)}
    assert files <= {ext_a, ext_b, "inside/x.wav"} and files
    # the manifest of written files lists every file earmark wrote, and only those
    manifest_files = set(outputs.read_manifest(str(out))["files"])
    assert set(outputs.list_files(str(out))) <= manifest_files


def external(source, base):
    return f"external/{hashlib.sha256(source.encode()).hexdigest()[:12]}/{base}"


@pytest.mark.parametrize("key,source,want", [
    ("room_a/n1.wav", "/c/room_a/n1.wav", "room_a/n1.wav"),
    ("./room_a//n1.wav", "/c/room_a/n1.wav", "room_a/n1.wav"),
    ("/abs/n1.wav", "/abs/n1.wav", external("/abs/n1.wav", "n1.wav")),
    ("gs://other/n1.wav", "gs://other/n1.wav", external("gs://other/n1.wav", "n1.wav")),
    ("a/../../n1.wav", "/c/n1.wav", external("/c/n1.wav", "n1.wav")),
    ("external/x.wav", "/c/external/x.wav", external("/c/external/x.wav", "x.wav")),
    ("C:\\rec\\n1.wav", "C:\\rec\\n1.wav", external("C:\\rec\\n1.wav", "n1.wav")),
])
def test_recording_name_is_relative_and_safe(key, source, want):
    got = outputs.recording_name(key, source)
    assert got == want
    assert not got.startswith("/") and ".." not in got.split("/") and "://" not in got


def test_unique_names_give_every_recording_files_of_its_own():
    from earmark.pipelines.label_formats import per_recording_files

    def files_of(name):
        return per_recording_files(name, ["raven", "audacity"], True).values()
    long = "n" * 250 + ".wav"
    keys = ["A.wav", "a.wav", "a/b.wav", "a\\b.wav", "c.wav", "c.wav.selections.txt/x.wav",
            long, "caf\u00e9.wav", "cafe\u0301.wav", "plain.wav"]
    names = outputs.unique_names([(k, "/corpus/" + k) for k in keys], files_of)
    # the first of each colliding set (code-point order) keeps its plain name
    assert set(names) == {"a.wav", "a\\b.wav", "c.wav", long, "caf\u00e9.wav"}
    final = {k: names.get(k, outputs.recording_name(k, "/corpus/" + k)) for k in keys}
    all_files = [rel for k in keys for rel in files_of(final[k])]
    folded = [outputs._fold(rel) for rel in all_files]
    assert len(set(folded)) == len(folded)  # unique even where case and accents fold
    folders = {f.rsplit("/", i)[0] for f in folded for i in range(1, f.count("/") + 1)}
    assert not folders & set(folded)
    assert all(len(part.encode()) <= 255 for rel in all_files for part in rel.split("/"))
    # stable: the same key, the same fallback, whatever else the corpus holds
    assert outputs.unique_names([("a.wav", "x"), ("A.wav", "y")], files_of)["a.wav"] == names["a.wav"]


def test_colliding_and_overlong_names_each_get_their_own_files(model, tmp_path):
    """Names that differ only in case or separators, a name too long once `.selections.txt`
    is added (legal for the audio on ext4), a file beside a folder named like its table: the
    run labels them all, and sources.csv says which outputs are whose."""
    corpus_dir = tmp_path / "odd"
    keys = ["A.wav", "a.wav", "a\\b.wav", "a/b.wav", "n" * 246 + ".wav", "c.wav",
            "c.wav.selections.txt/x.wav"]
    for i, key in enumerate(keys):
        save(str(corpus_dir / key), [(1.0, "class_0"), (1.0, None)], i)
    out = tmp_path / "out"
    stats = run_label(model, out, "--scores", source=str(corpus_dir))
    assert stats["files_labeled"] == len(keys) and stats["files_failed"] == 0
    with open(out / "sources.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(os.path.relpath(r["source"], corpus_dir) for r in rows) == sorted(keys)
    names = [r["name"] for r in rows]
    assert len({outputs._fold(n) for n in names}) == len(keys)
    for name in names:
        for rel in label.per_recording_files(name, FORMATS.split(","), True).values():
            assert os.path.isfile(out / rel), rel
    assert "A.wav" in names and "a.wav" not in names  # the first keeps its plain name


# --- 2. no mixing -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("outputs_corpus")))


def test_a_used_output_is_refused_and_overwrite_removes_only_earmarks_files(model, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    run_label(model, out, source=corpus)
    assert os.path.isfile(out / "raven" / "room_b" / "two.flac.selections.txt")
    (out / "my_notes.txt").write_text("mine")
    (out / "raven" / "mine.selections.txt").write_text("mine too")
    before = files_under(out)

    argv = ["label", "--model", model, "--input", corpus, "--output", str(out), "--formats", FORMATS]
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("earmark: error: --output") and "--overwrite" in err[0]
    assert files_under(out) == before  # refused before writing anything

    # --overwrite, now over room_a only: room_b's stale tables must go, the user's files stay
    stats = label.main(["--model", model, "--input", os.path.join(corpus, "room_a"), "--output",
                        str(out), "--formats", FORMATS, "--overwrite"])
    assert stats["files_labeled"] == 1
    now = set(outputs.list_files(str(out)))
    assert {"my_notes.txt", "raven/mine.selections.txt"} <= now
    assert read(out / "my_notes.txt") == b"mine"
    assert not [n for n in now if "room_b" in n or n.startswith(("raven/room_a", "audacity/room_a"))], now
    assert "raven/one.wav.selections.txt" in now
    listed = set(outputs.read_manifest(str(out))["files"])
    assert now - listed == {"my_notes.txt", "raven/mine.selections.txt"}
    assert not [n for n in now if n.startswith("beam-temp")]


def test_overwrite_refuses_a_folder_earmark_did_not_write(model, corpus, tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "segments.csv").write_text("someone else's\n")
    with pytest.raises(UserError, match="earmark did not write"):
        run_label(model, out, "--overwrite", source=corpus)
    assert os.listdir(out) == ["segments.csv"] and read(out / "segments.csv") == b"someone else's\n"
    with pytest.raises(UserError, match="earmark did not write"):
        prepare.run(["--input", corpus, "--output", str(out), "--overwrite"])
    assert os.listdir(out) == ["segments.csv"]


def test_overwrite_after_a_killed_run_removes_its_files_by_name_and_nothing_else(
        model, corpus, tmp_path):
    """A run killed as its first Raven table appears; the user then puts files of their own
    beside its outputs, under names like earmark's temporary ones. --overwrite removes every
    file the killed run wrote (named in its manifest before writing) and none of
    the user's; the result is a fresh run's folder plus the user's files."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "earmark", "label", "--model", model, "--input", corpus,
           "--output", str(out), "--formats", FORMATS]
    run_until(cmd, lambda: os.path.isdir(out / "raven") and any(
        n.endswith(".selections.txt") for _, _, names in os.walk(out / "raven") for n in names))
    assert not outputs.read_manifest(str(out))["complete"]
    mine = {"raven/mine.selections.txt": b"my table", "beam-temp-mine": b"a name like Beam's",
            "notes.tmp": b"tmp", "run.json.1234.tmp": b"looks like an old temp file",
            "earmark_journal.txt": b"x"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    run_label(model, out, "--overwrite", source=corpus)
    fresh = tmp_path / "fresh"
    run_label(model, fresh, source=corpus)
    assert set(outputs.list_files(str(out))) == set(outputs.list_files(str(fresh))) | set(mine)
    assert all(read(out / name) == data for name, data in mine.items())
    assert not [n for n in outputs.list_files(str(out)) if n.startswith(outputs.JOURNAL_DIR + "/")]


def make_clips(root, per_label=8):
    for label_name, hz in (("low", 500.0), ("high", 3000.0)):
        os.makedirs(os.path.join(root, label_name), exist_ok=True)
        for i in range(per_label):
            write(os.path.join(root, label_name, f"c{i}.wav"), tone(1.0 + 0.1 * i, RATE, freq_hz=hz), RATE)
    return root


def test_prepare_over_an_older_run_leaves_train_only_the_new_shards(tmp_path):
    clips = make_clips(str(tmp_path / "clips"))
    out = tmp_path / "prepared"
    prepare.run(["--input", clips, "--output", str(out), "--num-shards", "3"])
    old = sorted(n for n in os.listdir(out) if n.endswith(".tfrecord.gz"))
    assert len([n for n in old if n.startswith("train-")]) == 3
    with pytest.raises(UserError, match="--overwrite"):
        prepare.run(["--input", clips, "--output", str(out), "--num-shards", "1"])
    # a shard-like file earmark did not write (copied in by hand): kept, and never read
    stray = out / "train-00007-of-00009.tfrecord.gz"
    shutil.copy(out / old[-1], stray)

    prepare.run(["--input", clips, "--output", str(out), "--num-shards", "1", "--overwrite"])
    shards = sorted(n for n in os.listdir(out) if n.endswith(".tfrecord.gz"))
    assert shards == sorted([stray.name] + [f"{s}-00000-of-00001.tfrecord.gz" for s in data.SPLITS])
    stats = load_json(str(out), "stats.json")
    assert stats["shards"] == {s: [f"{s}-00000-of-00001.tfrecord.gz"] for s in data.SPLITS}
    assert data.split_files(str(out), "train") == [str(out / "train-00000-of-00001.tfrecord.gz")]
    train = data.read_split(data.open_prepared(str(out)), "train")
    assert len(train) == sum(v["patches"] for v in stats["splits"]["train"].values())
    assert set(os.listdir(out)) - {stray.name} == set(outputs.read_manifest(str(out))["files"])


def test_a_failed_pipeline_leaves_no_beam_temp_folder(tmp_path):
    """A write that fails midway leaves Beam's beam-temp-* folder (shown first with Beam's
    own sink); earmark's sinks name it by the run (`pipelines/sinks.py`), and
    `outputs.run_pipeline` removes exactly that folder before the error goes on."""
    from earmark.pipelines import sinks

    def build(folder, write):
        p = beam.Pipeline()
        _ = (p | "Create" >> beam.Create(range(4))
             | "Fail" >> beam.Map(lambda i: 1 // (i - 3))
             | "Write" >> write(os.path.join(folder, "part")))
        return p
    plain, managed = tmp_path / "plain", tmp_path / "managed"
    plain.mkdir()
    (managed / "beam-temp-mine").mkdir(parents=True)   # the user's, by its name only
    (managed / "beam-temp-mine" / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="division"):
        build(str(plain), beam.io.WriteToText).run().wait_until_finish()
    assert [n for n in os.listdir(plain) if n.startswith("beam-temp-")], "the case leaves nothing to clean"
    p = build(str(managed), lambda prefix: sinks.write_text(prefix, str(managed), "run1"))
    with pytest.raises(Exception, match="division"):
        outputs.run_pipeline(p, p.options, str(managed),
                             sinks.temp_folders(str(managed), [str(managed / "part")], "run1"))
    assert outputs.list_files(str(managed)) == ["beam-temp-mine/keep.txt"]


def test_prepare_runs_on_the_local_fnapi_runner_and_leaves_no_temporary_folder(
        tmp_path, monkeypatch, caplog, capsys):
    """Beam 2.72's DirectRunner tries its Prism runner first for prepare's pipeline: a
    download from GitHub (offline: a failure, then a fallback) that left an empty folder in
    the system's temporary folder on every run. earmark runs on the FnApiRunner it is tested
    on, and nothing is left outside the output folder. Nor is the pipeline first rebuilt
    from its runner-API proto (`Pipeline.run`'s check, which the DirectRunner skips for
    batch pipelines): 0.25 s of every run's start."""
    import logging
    import tempfile
    import apache_beam as beam
    from earmark.pipelines import local_runner
    corpus, system_tmp = tmp_path / "clips", tmp_path / "system-tmp"
    for label in ("a", "b"):
        (corpus / label).mkdir(parents=True)
        write(str(corpus / label / f"{label}.wav"), tone(2.0, 16000), 16000)
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    used, original = [], local_runner.LocalRunner.run_pipeline

    def recorded(runner, pipeline, options):
        used.append(runner)
        return original(runner, pipeline, options)
    monkeypatch.setattr(local_runner.LocalRunner, "run_pipeline", recorded)
    rebuilt, from_proto = [], beam.Pipeline.from_runner_api

    def recorded_rebuild(*args, **kwargs):
        rebuilt.append(args)
        return from_proto(*args, **kwargs)
    monkeypatch.setattr(beam.Pipeline, "from_runner_api", staticmethod(recorded_rebuild))
    caplog.set_level(logging.INFO)
    prepare.main(["--input", str(corpus), "--output", str(tmp_path / "out")])
    assert len(used) == 1 and "Prism" not in caplog.text
    assert rebuilt == []
    # TensorFlow's autograph keeps its generated sources there until the process exits
    assert [n for n in os.listdir(system_tmp) if not n.startswith("__autograph_generated")] == []
    assert load_json(str(tmp_path / "out"), "stats.json")
    # a clip corpus's summary names its own reason only: each 2-s clip's tail window
    assert "windows left out of training: 2 at a clip's end (less than --min-overlap" in \
        capsys.readouterr().out.splitlines()[-1]


def test_gcs_output_refused_then_overwritten_keeping_foreign_objects(model, corpus, gcs_emulator):
    client = gcs_emulator.client()
    bucket = client.create_bucket("outputs-bucket")
    out = "gs://outputs-bucket/labels"
    run_label(model, out, "--no_auth", source=corpus)
    names = {b.name for b in bucket.list_blobs(prefix="labels/")}
    assert "labels/raven/room_b/two.flac.selections.txt" in names and "labels/earmark_outputs.json" in names
    bucket.blob("labels/theirs.txt").upload_from_string(b"keep me")
    with pytest.raises(UserError, match="--overwrite"):
        run_label(model, out, "--no_auth", source=corpus)
    run_label(model, out, "--no_auth", "--overwrite", source=os.path.join(corpus, "room_a"))
    after = {b.name for b in bucket.list_blobs(prefix="labels/")}
    assert "labels/theirs.txt" in after and not [n for n in after if "room_b" in n or "beam-temp" in n]
    assert "labels/raven/one.wav.selections.txt" in after
    assert bucket.blob("labels/theirs.txt").download_as_bytes() == b"keep me"


def test_gcs_model_corpus_and_output_give_the_local_run_byte_for_byte(model, corpus,
                                                                       gcs_emulator, tmp_path):
    """Model dir, corpus and output all on gs:// (the GCS emulator): the same files, byte for
    byte, as a local run."""
    local = tmp_path / "local"
    run_label(model, local, source=corpus)
    bucket = gcs_emulator.client().create_bucket("label-bucket")
    for folder, prefix in ((corpus, "corpus"), (model, "model")):
        for dirpath, _, names in os.walk(folder):
            for name in names:
                rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
                bucket.blob(f"{prefix}/{rel}").upload_from_filename(os.path.join(dirpath, name))
    stats = run_label("gs://label-bucket/model", "gs://label-bucket/out", "--no_auth",
                      source="gs://label-bucket/corpus")
    assert stats["files_labeled"] == 2 and stats["files_failed"] == 1
    for name in ("segments.csv", "segments.jsonl", "raven/room_a/one.wav.selections.txt",
                 "audacity/room_b/two.flac.txt"):
        assert bucket.blob(f"out/{name}").download_as_bytes() == read(local / name), name


# --- 3. incremental is transactional ----------------------------------------------------

def change_corpus(root):
    """What a second night brings: one recording changed, one now broken, one new. The
    changed files' modification times move one second on (set, not waited for)."""
    one, two = os.path.join(root, "room_a", "one.wav"), os.path.join(root, "room_b", "two.flac")
    before = {p: os.stat(p).st_mtime_ns for p in (one, two)}
    save(one, [(1, None), (2.5, "class_1"), (1.5, "class_0")], 11)
    with open(two, "wb") as f:
        f.write(b"fLaC broken now")
    for path, mtime_ns in before.items():
        os.utime(path, ns=(mtime_ns + 10**9, mtime_ns + 10**9))
    save(os.path.join(root, "room_c", "three.wav"), [(2, "class_0"), (1, None), (1.5, "class_1")], 12)


@pytest.fixture(scope="module")
def nights(model, tmp_path_factory):
    """A first incremental run (`first`) over a corpus, then the corpus changed; the
    `reference` is `first` plus an uninterrupted incremental run over the changed corpus."""
    root = tmp_path_factory.mktemp("nights")
    corpus_dir = make_corpus(str(root / "corpus"))
    first = root / "first"
    assert run_label(model, first, "--incremental", source=corpus_dir)["files_labeled"] == 2
    change_corpus(corpus_dir)
    reference = root / "reference"
    shutil.copytree(first, reference)
    second = run_label(model, reference, "--incremental", source=corpus_dir)
    assert second["files_new_or_changed"] == 3 and second["files_labeled"] == 2
    return {"corpus": corpus_dir, "first": first, "reference": reference}


RESULT_FILES = ("segments.csv", "segments.jsonl", "sources.csv")


def per_recording(out) -> dict:
    return {p: h for p, h in files_under(out).items()
            if p.split(os.sep)[0] in ("raven", "audacity", "scores")}


def manifest_shape(out):
    """The output manifest with each run's id replaced by its place in time order."""
    manifest = outputs.read_manifest(str(out))
    runs = sorted(os.listdir(out / "runs"))

    def placed(name):
        for i, run in enumerate(runs):
            name = name.replace(run, f"RUN{i}")
        return name
    return (manifest["complete"], manifest["incremental"], sorted(map(placed, manifest["files"])),
            sorted(map(placed, manifest["folders"])))


def assert_same_result(out, reference):
    for name in RESULT_FILES:
        assert read(out / name) == read(reference / name), name
    assert per_recording(out) == per_recording(reference)
    assert len(os.listdir(out / "runs")) == len(os.listdir(reference / "runs"))
    left = [n for n in outputs.list_files(str(out)) if "beam-temp" in n or
            n.endswith(outputs.TEMP_SUFFIX) or n.startswith(outputs.JOURNAL_DIR)]
    assert not left
    assert manifest_shape(out) == manifest_shape(reference)


def test_reference_run_replaced_what_changed(nights):
    ref = nights["reference"]
    entries = ledger.read(str(ref))
    assert {k: e["status"] for k, e in entries.items()} == {
        "room_a/one.wav": "labeled", "room_b/two.flac": "failed", "room_b/broken.wav": "failed",
        "room_c/three.wav": "labeled"}
    names = set(per_recording(ref))
    assert not [n for n in names if "two.flac" in n]  # a recording now broken keeps no old table
    with open(ref / "segments.csv", newline="") as f:
        assert {r["file"] for r in csv.DictReader(f)} == {"room_a/one.wav", "room_c/three.wav"}
    state = ledger.read_state(str(ref))
    assert state["complete_run"] == json.loads(read(ref / "run.json"))["run_id"]
    assert set(state["combined"]) == {"segments.csv", "segments.jsonl", "sources.csv", "run.json"}


def run_until(cmd, trigger, env=None):
    """Run `cmd` and SIGKILL its process group as soon as `trigger()` holds (a file
    appearing, not a guess at timing); → the process, waited for. With `trigger` None, the
    process is left to end (killing itself through the ledger's test hook)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
                            env=env, start_new_session=True)
    try:
        if trigger is not None:
            assert _poll(trigger, proc), proc.stderr.read()[-2000:]
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc


def _poll(path_test, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path_test():
            return True
        time.sleep(0.01)
    return False


KILL_STAGES = ["run_dir", "run_segments", "partition", "segments_csv", "ledger"]


@pytest.mark.parametrize("stage", KILL_STAGES)
def test_incremental_run_killed_at_any_stage_resumes_to_the_uninterrupted_result(model, nights, tmp_path,
                                                                                  stage):
    """SIGKILL at each stage of the second night's run: on a file appearing (the run's
    folder, its segments.csv), or through FinishRun's test hook right after a stage; the
    next --incremental run ends with exactly the reference's files."""
    out = tmp_path / "out"
    shutil.copytree(nights["first"], out)
    first_ledger = read(out / "ledger.json")
    first_runs = set(os.listdir(out / "runs"))
    env = dict(os.environ)
    if stage not in ("run_dir", "run_segments"):
        env[ledger.TEST_PAUSE_ENV] = stage
    cmd = [sys.executable, "-m", "earmark", "label", "--model", model, "--input", nights["corpus"],
           "--output", str(out), "--formats", FORMATS, "--incremental"]
    def new_run():
        return sorted(set(os.listdir(out / "runs")) - first_runs)
    triggers = {"run_dir": new_run, "run_segments": lambda: new_run() and os.path.exists(
        out / "runs" / new_run()[0] / "segments.csv")}
    proc = run_until(cmd, triggers.get(stage), env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    if stage == "ledger":
        assert read(out / "ledger.json") != first_ledger
    elif stage != "run_segments":  # the poll's kill lands a few ms after its trigger
        assert read(out / "ledger.json") == first_ledger, "the ledger changed before the run was whole"

    resumed = run_label(model, out, "--incremental", source=nights["corpus"])
    if stage == "ledger":
        assert resumed == {}  # everything was recorded; the combined view is whole
    else:
        assert resumed["files_new_or_changed"] == 3
    assert_same_result(out, nights["reference"])
    assert run_label(model, out, "--incremental", source=nights["corpus"]) == {}


def test_incremental_drops_recordings_gone_from_the_corpus_unless_kept(model, tmp_path):
    corpus_dir = make_corpus(str(tmp_path / "corpus"))
    kept, out = tmp_path / "kept", tmp_path / "out"
    for folder in (out, kept):
        run_label(model, folder, "--incremental", source=corpus_dir)
    os.remove(os.path.join(corpus_dir, "room_a", "one.wav"))
    before = files_under(kept)
    assert run_label(model, kept, "--incremental", "--keep-missing", source=corpus_dir) == {}
    assert files_under(kept) == before
    # nothing new, one gone: its tables, segments and sources row leave the outputs
    assert run_label(model, out, "--incremental", source=corpus_dir) == {}
    assert not [n for n in outputs.list_files(str(out)) if "one.wav" in n]
    assert "one.wav" not in read(out / "segments.csv", "r") + read(out / "sources.csv", "r")
    assert set(ledger.read(str(out))) == {"room_b/two.flac", "room_b/broken.wav"}
    # with something new too: counted in run.json
    save(os.path.join(corpus_dir, "room_c", "new.wav"), [(2, "class_1")], 5)
    os.remove(os.path.join(corpus_dir, "room_b", "two.flac"))
    stats = run_label(model, out, "--incremental", source=corpus_dir)
    assert stats["files_removed"] == 1 and stats["files_new_or_changed"] == 1
    assert not [n for n in outputs.list_files(str(out)) if "two.flac" in n and "runs/" not in n]
    assert set(ledger.read(str(out))) == {"room_b/broken.wav", "room_c/new.wav"}


def test_an_output_inside_the_input_is_refused(model, corpus, tmp_path):
    with pytest.raises(UserError, match="inside --input"):
        run_label(model, os.path.join(corpus, "labels"), source=corpus)
    assert not os.path.exists(os.path.join(corpus, "labels"))
    with pytest.raises(UserError, match="--keep-missing"):
        run_label(model, tmp_path / "o", "--keep-missing", source=corpus)


def test_a_half_written_combined_view_is_rebuilt_from_runs(model, nights, tmp_path):
    """The ledger names the run whose combined view is whole, and its digests: a view that
    was lost or damaged after the run is rebuilt on the next start."""
    out = tmp_path / "out"
    shutil.copytree(nights["reference"], out)
    os.remove(out / "segments.jsonl")
    (out / "segments.csv").write_text("file,start_s\ntruncated")
    assert run_label(model, out, "--incremental", source=nights["corpus"]) == {}
    assert_same_result(out, nights["reference"])
    assert read(out / "run.json") == read(nights["reference"] / "run.json")


def test_incremental_refuses_a_non_incremental_folder_until_overwrite(model, corpus, tmp_path):
    out = tmp_path / "out"
    plain = run_label(model, out, source=corpus)
    plain_csv = read(out / "segments.csv")
    with pytest.raises(UserError, match="--incremental cannot continue"):
        run_label(model, out, "--incremental", source=corpus)
    assert read(out / "segments.csv") == plain_csv and not os.path.exists(out / "ledger.json")
    inc = run_label(model, out, "--incremental", "--overwrite", source=corpus)
    assert inc["files_new_or_changed"] == plain["files_matched"] == 3
    assert read(out / "segments.csv") == plain_csv
    assert len(ledger.read(str(out))) == 3
    assert run_label(model, out, "--incremental", source=corpus) == {}


def test_prepare_refuses_an_output_inside_its_input(tmp_path):
    clips = make_clips(str(tmp_path / "clips"), per_label=2)
    with pytest.raises(UserError, match="inside --input"):
        prepare.run(["--input", clips, "--output", os.path.join(clips, "prepared")])
    assert sorted(os.listdir(clips)) == ["high", "low"]
