"""`earmark search` end to end: generated recordings embedded by `earmark embed` (the tiny
trained model, and the test base `fake_conv` alone), queries as files, spans and tables;
the exact streaming search against brute force; the Beam search against the local one."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from earmark.pipelines import embed, embeddings_io, search
from tests import fake_base, nights
from tests.fixtures import files_under, make_corpus, one_line_error
from earmark.model.events import Event


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(str(tmp_path_factory.mktemp("search_corpus")))


@pytest.fixture(scope="module")
def embedded(tiny_model, corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("search_embeddings"))
    embed.main(["--model", tiny_model, "--input", corpus, "--output", out])
    return out


def results(folder) -> list:
    with open(os.path.join(folder, "results.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_a_span_of_an_embedded_recording_finds_itself_first(embedded, corpus, tmp_path):
    out = str(tmp_path / "hits")
    query = os.path.join(corpus, "night", "c.flac") + "@2.88-3.855"   # window 6 of c.flac
    stats = search.main(["--embeddings", embedded, "--query", query, "--top", "5", "--output", out])
    rows = results(out)
    assert list(rows[0]) == ["rank", "query", "file", "start_s", "end_s", "similarity"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert (rows[0]["file"], rows[0]["start_s"], rows[0]["end_s"]) == ("night/c.flac", "2.880", "3.855")
    assert float(rows[0]["similarity"]) > 0.9999 and rows[0]["query"] == query
    sims = [float(r["similarity"]) for r in rows]
    assert sims == sorted(sims, reverse=True)
    assert stats["windows_searched"] == json.load(open(os.path.join(embedded, "embed.json")))["windows"]
    raven = open(os.path.join(out, "raven", "night", "c.flac.selections.txt")).read().splitlines()
    assert raven[0].startswith("Selection\tView") and any("\t2.880\t3.855\t" in l for l in raven)
    manifest = json.load(open(os.path.join(out, "earmark_outputs.json")))
    assert manifest["complete"] and sorted(files_under(out)) == manifest["files"]


def test_the_beam_search_returns_what_the_local_one_does(embedded, corpus, tmp_path):
    queries = ["--query", os.path.join(corpus, "a.wav"),
               "--query", os.path.join(corpus, "night", "c.flac") + "@1.0-4.5"]
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    search.run(["--embeddings", embedded, *queries, "--top", "7", "--output", local])
    stats = search.run(["--embeddings", embedded, *queries, "--top", "7", "--output", beam],
                       test_pipeline=TestPipeline())
    assert stats["mode"] == "beam"
    assert files_under(local)["results.csv"] == files_under(beam)["results.csv"]
    assert len(results(local)) == 14
    windows = [r for r in csv.DictReader(open(os.path.join(local, "queries.csv"), newline=""))]
    assert [int(w["windows"]) for w in windows] == [16, 7]   # 8 s file; 3.5 s span at 0.48 s


def test_table_selections_are_the_queries_and_review_html_saves_verdicts(embedded, corpus, tmp_path):
    """A Raven table and an Audacity track, each named after its recording (beside them;
    the Audacity name without the extension), one query a selection; a span labelled by
    --label. The command's review.html has a row per result, and saves verdicts.csv."""
    from earmark import search_page
    tables = tmp_path / "tables"
    tables.mkdir()
    shutil.copy(os.path.join(corpus, "a.wav"), tables / "a.wav")
    shutil.copy(os.path.join(corpus, "night", "c.flac"), tables / "c.flac")
    nights.write_raven_table([Event(2.4, 3.375, "class_1"), Event(0.0, 0.975, "class_0")],
                             str(tables / "a.wav.Table.1.selections.txt"))
    (tables / "c.txt").write_text("4.32\t5.295\tclass_1\n")
    out = str(tmp_path / "hits")
    span = str(tables / "c.flac") + "@0.48-1.455"
    search_page.main(["--embeddings", embedded, "--query", str(tables / "a.wav.Table.1.selections.txt"),
                      "--query", str(tables / "c.txt"), "--query", span, "--label", "snore",
                      "--top", "1", "--output", out])
    rows = results(out)
    assert [(r["query"], r["file"], r["start_s"]) for r in rows] == [
        ("a.wav@2.400-3.375", "a.wav", "2.400"), ("a.wav@0.000-0.975", "a.wav", "0.000"),
        ("c@4.320-5.295", "night/c.flac", "4.320"), (span, "night/c.flac", "0.480")]
    assert all(float(r["similarity"]) > 0.9999 for r in rows)
    with open(os.path.join(out, "queries.csv"), newline="") as f:
        queries = list(csv.DictReader(f))
    assert [q["label"] for q in queries] == ["class_1", "class_0", "class_1", "snore"]
    assert queries[2]["recording"] == str(tables / "c.flac")
    assert "review.html" in json.load(open(os.path.join(out, "earmark_outputs.json")))["files"]
    _saved_verdicts_are_the_results(out, rows, ["class_1", "class_0", "class_1", "snore"], tmp_path)


def _saved_verdicts_are_the_results(out, rows, labels, tmp_path):
    """review.html in Chromium: a row and a player per result; yes, no, save → verdicts.csv
    in review.csv's columns, a row per result (label, similarity, strategy `search`)."""
    import time
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from earmark.model.annotations import verdict_table
    from earmark.model.review import Item
    from tests.browser import chromium
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(downloads) as browser:
        browser.get("file://" + os.path.join(out, "review.html"))
        items = browser.find_elements(By.CSS_SELECTOR, "tr.item")
        assert len(items) == len(rows) == len(browser.find_elements(By.CSS_SELECTOR, "tr audio"))
        items[0].find_element(By.CSS_SELECTOR, 'button[data-verdict="yes"]').click()
        ActionChains(browser).send_keys("n").perform()       # the next row: no
        browser.find_element(By.ID, "save").click()
        saved = downloads / "verdicts.csv"
        deadline = time.time() + 5
        while not saved.exists() and time.time() < deadline:
            time.sleep(0.05)
    want = verdict_table([Item(r["file"], float(r["start_s"]), float(r["end_s"]), label,
                               float(r["similarity"]), "search", verdict)
                          for r, label, verdict in zip(rows, labels, ["yes", "no", "", ""])])
    assert want.startswith("file,start_s,end_s,label,confidence,strategy,verdict\n")
    assert saved.read_text(encoding="utf-8") == want


def test_a_file_name_holding_an_at_sign_is_a_file_and_can_be_spanned(embedded, corpus, tmp_path):
    odd = tmp_path / "night@1-2.wav"
    shutil.copy(os.path.join(corpus, "a.wav"), odd)
    whole = search.parse_query(str(odd))
    assert len(whole) == 1 and whole[0].path == str(odd) and whole[0].start_s is None
    span = search.parse_query(f"{odd}@0.48-1.455")
    assert (span[0].path, span[0].start_s, span[0].end_s) == (str(odd), 0.48, 1.455)
    out = str(tmp_path / "hits")
    search.main(["--embeddings", embedded, "--query", f"{odd}@0.48-1.455", "--top", "1",
                 "--output", out])
    top = results(out)[0]   # a copy of a.wav: its own window 1
    assert (top["file"], top["start_s"], float(top["similarity"]) > 0.9999) == ("a.wav", "0.480", True)


def test_a_base_alone_round_trips_too(corpus, tmp_path):
    fake_base.register()
    emb = str(tmp_path / "emb")
    stats = embed.main(["--base", fake_base.NAME, "--input", corpus, "--output", emb])
    assert stats["embedding_dim"] == 16 and stats["labels"] == [] and stats["model_id"] == ""
    assert "scores" not in stats["columns"] and stats["hop_s"] == 0.5
    out = str(tmp_path / "hits")
    search.main(["--embeddings", emb, "--query", os.path.join(corpus, "a.wav") + "@3.0-4.0",
                 "--top", "3", "--output", out])
    top = results(out)[0]
    assert (top["file"], top["start_s"], top["end_s"]) == ("a.wav", "3.000", "4.000")
    assert float(top["similarity"]) > 0.9999


def write_synthetic(folder, vectors, files, starts, dim):
    order = sorted(range(len(files)), key=lambda i: (files[i], starts[i]))
    block = ([files[i] for i in order], [starts[i] for i in order],
             [starts[i] + 1 for i in order], vectors[order], None)
    embeddings_io.write_shard(os.path.join(folder, "embeddings-00000-of-00001.parquet"),
                              [block], dim)
    with open(os.path.join(folder, "embed.json"), "w") as f:
        json.dump({"shards": ["embeddings-00000-of-00001.parquet"], "embedding_dim": dim}, f)
    return order


def test_the_streaming_search_is_exact_with_ties_in_bounded_blocks(tmp_path, monkeypatch):
    """Small row groups (so the search streams dozens of them), duplicate vectors (ties):
    the same rows as brute force over everything at once, ordered by similarity, then file
    and start; the Beam search (top per row group, combined by beam.combiners.Top) agrees."""
    monkeypatch.setattr(embeddings_io, "ROW_GROUP_BYTES", 256 * 4 * 8)   # 256 rows a group
    rng = np.random.default_rng(3)
    n, dim = 5000, 8
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors[100:400] = vectors[7]                       # 301 identical vectors
    files = [f"rec{i % 13:02d}.wav" for i in range(n)]
    starts = [float(i // 13) for i in range(n)]
    write_synthetic(str(tmp_path), vectors, files, starts, dim)
    shards = embeddings_io.shard_paths(str(tmp_path))
    assert embeddings_io.row_groups(shards[0]) == 20
    queries = embedding_unit(np.stack([vectors[7], rng.standard_normal(dim)]))
    best, windows = search.search_local(shards, queries, 25, threads=2)
    assert windows == n
    unit = embedding_unit(vectors)
    for j, q in enumerate(queries):
        sims = unit @ q
        want = sorted(range(n), key=lambda i: (-sims[i], files[i], starts[i]))[:25]
        assert [(c[1], c[2]) for c in best[j]] == [(files[i], starts[i]) for i in want]
        assert np.allclose([c[0] for c in best[j]], sims[want], atol=1e-5)
    assert best[0][0][0] == pytest.approx(1.0, abs=1e-5) and best[0][24][0] == best[0][0][0]
    def keep(b):   # the job runs on copies of its functions: its result comes back in a file
        with open(tmp_path / "beam.json", "w") as f:
            json.dump(b, f)
    p = TestPipeline()
    search.build_search_pipeline(p, shards, queries, 25, keep)
    p.run()
    beam_best = json.load(open(tmp_path / "beam.json"))
    assert [[tuple(c) for c in b] for b in beam_best] == best


def embedding_unit(x):
    from earmark.model.embedding import unit_rows
    return unit_rows(np.asarray(x, np.float32))


@pytest.mark.parametrize("query,message", [
    ("/no/such/file.wav", "no such file"),
    ("{corpus}/a.wav@3-2", "must end after it starts"),
    ("{corpus}/a.wav@30-40", "after the end"),
    ("{corpus}/night", "no such file"),
])
def test_bad_queries_are_one_line_errors(capsys, embedded, corpus, tmp_path, query, message):
    err = one_line_error(capsys, ["search", "--embeddings", embedded, "--query",
                                  query.format(corpus=corpus), "--output", str(tmp_path / "o")])
    assert message in err, err


def test_an_embeddings_folder_needs_its_embed_json(capsys, tmp_path, corpus):
    err = one_line_error(capsys, ["search", "--embeddings", str(tmp_path), "--query",
                                  os.path.join(corpus, "a.wav"), "--output", str(tmp_path / "o")])
    assert "no embed.json there" in err


def test_query_windows_lie_inside_the_query(tmp_path):
    """Windows from the start every hop while they fit, one more ending at the end; a span
    shorter than a window: the window centred on it; a whole clip shorter than a window:
    the clip repeated, never silence."""
    import soundfile as sf
    from earmark.model.features import FeatureConfig
    rate = 8000
    config = FeatureConfig(sample_rate_hz=rate, patch_seconds=1.0, patch_hop_seconds=0.5,
                           mel_max_hz=3000.0, representation="waveform")
    ramp = np.arange(4 * rate, dtype=np.float32) / (4 * rate)    # a sample's value: its time / 4 s
    sf.write(tmp_path / "long.wav", ramp, rate, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", ramp[:int(0.3 * rate)], rate, subtype="FLOAT")
    long_, short = str(tmp_path / "long.wav"), str(tmp_path / "short.wav")

    def starts(q):
        return [round(float(w[0]) * 4, 3) for w in search.query_windows(q, config)]
    assert starts(search.Query("q", long_, 0.2, 2.5)) == [0.2, 0.7, 1.2, 1.5]
    assert starts(search.Query("q", long_, 1.0, 2.0)) == [1.0]
    assert starts(search.Query("q", long_, 3.6, 3.8)) == [3.0]     # centred, inside the file
    assert starts(search.Query("q", long_)) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    (tiled,) = search.query_windows(search.Query("q", short), config)
    assert np.array_equal(tiled, np.tile(ramp[:int(0.3 * rate)], 4)[:rate])
