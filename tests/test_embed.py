"""`earmark embed` and `earmark label --formats embeddings` end to end: a real (tiny) trained
model, generated recordings, DirectRunner; the Parquet rows read back with their reader."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from earmark.model.windowing import count_windows
from earmark.pipelines import embed, embeddings_io, label, label_formats, ledger
from tests.fixtures import CORPUS, ODD_NAME, files_under, make_corpus, one_line_error

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOP_S, WINDOW_S = 0.48, 0.975   # the tiny log-mel model's labeling hop and window


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("embed_corpus")))


@pytest.fixture(scope="module")
def embedded(tiny_model, corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("embedded"))
    stats = embed.main(["--model", tiny_model, "--input", corpus, "--output", out])
    return out, stats


def durations() -> dict:
    return {name: float(sum(s for s, _ in parts)) for name, parts in CORPUS.items()}


def test_one_row_per_window_sorted_with_the_models_vectors_and_scores(embedded, tiny_model):
    out, stats = embedded
    summary = json.load(open(os.path.join(out, "embed.json")))
    meta = json.load(open(os.path.join(tiny_model, "model.json")))
    assert (summary["files_matched"], summary["files_embedded"], summary["files_failed"]) == (4, 3, 1)
    assert summary["base"] == meta["base"]["name"] and summary["labels"] == meta["labels"]
    assert summary["embedding_dim"] == meta["base"]["feature_dim"]
    assert (summary["hop_s"], summary["window_s"]) == (HOP_S, WINDOW_S)
    assert summary["model_id"] and summary["shards"] == ["embeddings-00000-of-00001.parquet"]
    want = {n: count_windows(int(d * 16000), 15600, 7680) for n, d in durations().items()}
    assert summary["windows"] == sum(want.values())
    dead = [json.loads(l) for l in open(os.path.join(out, "dead_letter.jsonl"))]
    assert [d["file"] for d in dead] == ["broken.wav"]

    shard = pq.ParquetFile(os.path.join(out, summary["shards"][0]))
    assert [str(f.type) for f in shard.schema_arrow] == [
        "string", "double", "double", "list<element: float>", "list<element: float>"]
    assert shard.schema_arrow.names == ["file", "start_s", "end_s", "embedding", "scores"]
    rows = embeddings_io.read_rows(out)
    assert [(r[0], r[1]) for r in rows] == sorted((r[0], r[1]) for r in rows)
    for name, n in want.items():
        mine = [r for r in rows if r[0] == name]
        assert [r[1] for r in mine] == [round(k * HOP_S, 6) for k in range(n)]
        assert [r[2] for r in mine] == [round(min(k * HOP_S + WINDOW_S, durations()[name]), 6)
                                        for k in range(n)]
    assert all(r[3].shape == (summary["embedding_dim"],) and r[3].dtype == np.float32 for r in rows)
    scores = np.stack([r[4] for r in rows])
    assert scores.shape == (len(rows), 2) and np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    # the vector is what the head scores: the head's own output on it is the scores column
    import keras
    head = keras.models.load_model(os.path.join(tiny_model, "model.keras"), compile=False).get_layer("head")
    vectors = np.stack([r[3] for r in rows[:8]])
    assert np.allclose(np.asarray(head(vectors)), scores[:8], atol=0.02)

    manifest = json.load(open(os.path.join(out, "earmark_outputs.json")))
    assert manifest["complete"] and sorted(files_under(out)) == manifest["files"]
    assert sorted(files_under(out)) == ["dead_letter.jsonl", "earmark_outputs.json", "embed.json",
                                        "embeddings-00000-of-00001.parquet", "sources.csv"]


def test_label_formats_embeddings_writes_the_same_bytes_in_the_same_pass(embedded, tiny_model,
                                                                         corpus, tmp_path):
    out, _ = embedded
    labeled = str(tmp_path / "labels")
    label.main(["--model", tiny_model, "--input", corpus, "--output", labeled,
                "--formats", "csv,embeddings", "--scores"])
    mine = os.path.join(labeled, "embeddings")
    name = "embeddings-00000-of-00001.parquet"
    assert open(os.path.join(mine, name), "rb").read() == open(os.path.join(out, name), "rb").read()
    summary = json.load(open(os.path.join(mine, "embed.json")))
    assert summary["shards"] == [name] and summary["files_embedded"] == 3
    assert summary["windows"] == json.load(open(os.path.join(out, "embed.json")))["windows"]
    # the scores column is what label scored and segmented: its scores/ CSV, to 4 decimals
    rows = [r for r in embeddings_io.read_rows(mine) if r[0] == "a.wav"]
    text = open(os.path.join(labeled, "scores", "a.wav.csv"), newline="").read()
    starts, by_label = label_formats.read_scores_csv(text)
    assert np.allclose(starts, [r[1] for r in rows], atol=1e-3)
    assert np.allclose(by_label["class_1"], [r[4][1] for r in rows], atol=6e-5)
    manifest = json.load(open(os.path.join(labeled, "earmark_outputs.json")))
    assert f"embeddings/{name}" in manifest["files"] and "embeddings/embed.json" in manifest["files"]
    assert not [f for f in files_under(labeled) if "beam-temp" in f]


def test_rows_do_not_depend_on_workers_chunks_or_shards(embedded, tiny_model, corpus, tmp_path):
    out, _ = embedded
    other = str(tmp_path / "threads")
    embed.main(["--model", tiny_model, "--input", corpus, "--output", other, "--shards", "3",
                "--chunk-seconds", "2", "--direct_num_workers=2",
                "--direct_running_mode=multi_threading"])
    summary = json.load(open(os.path.join(other, "embed.json")))
    assert summary["shards"] == embeddings_io.shard_names(3)
    for i, shard in enumerate(summary["shards"]):
        files = {r[0] for r in embeddings_io.read_rows_of(os.path.join(other, shard))}
        assert all(embeddings_io.shard_of(f, 3) == i for f in files)
    ours = sorted(embeddings_io.read_rows(other), key=lambda r: (r[0], r[1]))
    theirs = embeddings_io.read_rows(out)
    assert [(r[0], r[1], r[2]) for r in ours] == [(r[0], r[1], r[2]) for r in theirs]
    assert all(np.array_equal(a[3], b[3]) and np.array_equal(a[4], b[4])
               for a, b in zip(ours, theirs))


def rows_by_window(folder) -> dict:
    return {(r[0], r[1]): r[3] for r in embeddings_io.read_rows(folder)}


def test_incremental_embeds_new_and_changed_files_and_forgets_removed_ones(tiny_model, corpus,
                                                                           embedded, tmp_path):
    out, _ = embedded
    source = str(tmp_path / "corpus")
    shutil.copytree(corpus, source)
    inc = str(tmp_path / "inc")
    argv = ["--model", tiny_model, "--input", source, "--output", inc, "--incremental"]
    first = embed.main(argv)
    assert first["files_embedded"] == 3 and first["last_run"]["files_new_or_changed"] == 4
    assert embed.main(argv) == {}                       # nothing new
    assert rows_by_window(inc).keys() == rows_by_window(out).keys()
    shutil.copy(os.path.join(source, "a.wav"), os.path.join(source, "copy.wav"))   # new
    os.utime(os.path.join(source, "night", "c.flac"), (1e9, 1e9))                 # changed
    os.remove(os.path.join(source, ODD_NAME))                                     # gone
    third = embed.main(argv)
    assert third["last_run"]["files_new_or_changed"] == 2 and third["files_embedded"] == 3
    rows = embeddings_io.read_rows(inc)
    assert len(rows) == len({(r[0], r[1]) for r in rows})   # a re-embedded file's rows once
    want = {k: v for k, v in rows_by_window(out).items() if k[0] != ODD_NAME}
    want.update({("copy.wav", s): v for (f, s), v in want.items() if f == "a.wav"})
    got = rows_by_window(inc)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert len(os.listdir(os.path.join(inc, "runs"))) == 2
    assert sorted(json.load(open(os.path.join(inc, "ledger.json")))["files"]) == [
        "a.wav", "broken.wav", "copy.wav", "night/c.flac"]


@pytest.mark.slow
def test_a_run_killed_in_its_last_step_is_resumed(tiny_model, corpus, embedded, tmp_path):
    """Killed (SIGKILL) after it dropped a changed file's old rows, before its ledger: the
    next run embeds the file again and ends with the rows an uninterrupted run has."""
    out, _ = embedded
    source = str(tmp_path / "corpus")
    shutil.copytree(corpus, source)
    inc = str(tmp_path / "inc")
    argv = ["--model", tiny_model, "--input", source, "--output", inc, "--incremental"]
    embed.main(argv)
    os.utime(os.path.join(source, "a.wav"), (1e9, 1e9))
    env = dict(os.environ, **{ledger.TEST_PAUSE_ENV: "cleanup"})
    proc = subprocess.run([sys.executable, "-m", "earmark", "embed", *argv], cwd=REPO, env=env,
                          capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert "a.wav" not in {r[0] for r in embeddings_io.read_rows(inc)}   # dropped, not yet redone
    resumed = embed.main(argv)
    assert resumed["last_run"]["files_new_or_changed"] == 1
    got, want = rows_by_window(inc), rows_by_window(out)
    assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    assert len(os.listdir(os.path.join(inc, "runs"))) == 2
    manifest = json.load(open(os.path.join(inc, "earmark_outputs.json")))
    assert manifest["complete"] and set(files_under(inc)) <= set(manifest["files"]) | {
        f for f in files_under(inc) if f.startswith(tuple(manifest["folders"]))}


@pytest.mark.parametrize("argv,message", [
    (["--model", "M", "--base", "musicnn"], "not allowed with argument"),
    (["--base", "vgg16"], "an image base embeds log-mel patches"),
    (["--base", "no_such_base"], "unknown base"),
    (["--base", "musicnn", "--precision", "bfloat16"], "runs as it ships"),
    (["--base", "musicnn", "--hop-seconds", "4"], "--hop-seconds 4"),
    (["--base", "musicnn", "--shards", "0"], "--shards 0"),
])
def test_embed_flags_are_checked_in_one_line(capsys, tmp_path, argv, message):
    err = one_line_error(capsys, ["embed", *argv, "--input", str(tmp_path), "--output",
                                  str(tmp_path / "out")])
    assert message in err, err


def test_precision_int8_and_incremental_label_runs_refuse_embeddings(capsys, tiny_model, corpus,
                                                                      tmp_path):
    err = one_line_error(capsys, ["embed", "--model", tiny_model, "--input", corpus, "--output",
                                  str(tmp_path / "a"), "--precision", "int8"])
    assert "int8" in err and not os.path.exists(tmp_path / "a")
    err = one_line_error(capsys, ["label", "--model", tiny_model, "--input", corpus, "--output",
                                  str(tmp_path / "b"), "--formats", "csv,embeddings",
                                  "--incremental"])
    assert "earmark embed --model MODEL --incremental" in err
