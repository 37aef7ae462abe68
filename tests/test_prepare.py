"""The prepare pipeline on real and broken corpora, on DirectRunner."""
import collections
import csv
import os
import shutil

import numpy as np
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline

from earmark.model.errors import UserError
from earmark.pipelines import prepare
from tests.audio_fixtures import encode, tone, write
from tests.prepared import load_json, read_dead_letter, read_examples
from tests.shared import shared_path

SPLITS = ("train", "validation", "test")


def counter(result, name):
    rows = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    return sum(r.committed for r in rows)


@pytest.fixture(scope="module")
def snoring_run(tmp_path_factory):
    corpus = shared_path("data", "snoring")
    out = str(tmp_path_factory.mktemp("snoring_out"))
    result = prepare.run(["--input", corpus, "--output", out], test_pipeline=TestPipeline())
    return corpus, out, result


@pytest.mark.slow
def test_snoring_tfrecords_hold_exactly_what_stats_reports(snoring_run):
    corpus, out, result = snoring_run
    stats = load_json(out, "stats.json")
    assert stats["files_matched"] == stats["files_ok"] == 800 and stats["files_failed"] == 0
    assert read_dead_letter(out) == []
    assert load_json(out, "features.json")["labels"] == ["not_snore", "snore"]
    assert counter(result, "files_ok") == 800 and counter(result, "patches") == stats["patches"]
    per_split_label = collections.Counter()
    recordings_in = collections.defaultdict(set)
    for split in SPLITS:
        rows = read_examples(out, split)
        assert sum(v["patches"] for v in stats["splits"][split].values()) == len(rows)
        for r in rows:
            per_split_label[split, r["label_name"]] += 1
            recordings_in[r["recording_key"]].add(split)
            assert r["log_mel"].shape == (96, 64) and np.isfinite(r["log_mel"]).all()
            assert r["end_s"] > r["start_s"] >= 0
    for split in SPLITS:
        for label, row in stats["splits"][split].items():
            assert per_split_label[split, label] == row["patches"]
    assert all(len(s) == 1 for s in recordings_in.values()), "a recording spans two splits"
    assert len(recordings_in) == 800
    # labels balanced as in labels.csv: every clip is one patch, 400 per label
    with open(os.path.join(corpus, "labels.csv")) as f:
        truth = collections.Counter(row["label"] for row in csv.DictReader(f))
    totals = collections.Counter()
    for (split, label), n in per_split_label.items():
        totals[label] += n
    assert totals == truth
    # the default 80/10/10 split, within sampling noise of 800 recordings
    train = sum(n for (s, _), n in per_split_label.items() if s == "train")
    assert 0.75 < train / 800 < 0.85


def make_bad_corpus(root):
    """A class folder of broken, odd and fine files; returns {file name: expected reason or 'ok'}."""
    good, odd = os.path.join(root, "good"), os.path.join(root, "odd")
    os.makedirs(good)
    os.makedirs(odd)
    expected = {}
    for i in range(3):
        write(os.path.join(good, f"tone{i}.wav"), tone(1.2, 22050, freq_hz=300 + 100 * i), 22050)
        expected[f"tone{i}.wav"] = "ok"

    def put(name, data, outcome):
        with open(os.path.join(odd, name), "wb") as f:
            f.write(data)
        expected[name] = outcome

    put("zero_bytes.wav", b"", "empty_file")
    put("truncated_header.wav", encode(tone(1, 16000), 16000, "WAV", "PCM_16")[:30], "decode_error")
    put("random_bytes.wav", np.random.default_rng(1).bytes(20000), "decode_error")
    put("random_bytes.mp3", np.random.default_rng(2).bytes(20000), "decode_error")
    put("text.flac", b"not a flac file at all\n" * 50, "decode_error")
    put("notes.xyz", encode(tone(1, 16000), 16000, "WAV", "PCM_16"), "unsupported_extension")
    put("short_0.05s.wav", encode(tone(0.05, 16000), 16000, "WAV", "PCM_16"), "ok")
    put("silent.wav", encode(np.zeros((16000, 1), np.float32), 16000, "WAV", "PCM_16"), "ok")
    put("eight_channels.wav", encode(tone(1.0, 48000, 8), 48000, "WAV", "PCM_24"), "ok")
    put("rate_192k.wav", encode(tone(1.0, 192000), 192000, "WAV", "PCM_16"), "ok")
    nan = tone(1.0, 16000)
    nan[100:200] = np.nan
    put("nan_float.wav", encode(nan, 16000, "WAV", "FLOAT"), "non_finite_samples")
    put("flac_24bit.flac", encode(tone(1.0, 44100, 2), 44100, "FLAC", "PCM_24"), "ok")
    # a WAV whose header claims twice the data it holds: libsndfile reads what is there
    full = encode(tone(2.0, 16000), 16000, "WAV", "PCM_16")
    put("header_claims_more.wav", full[:len(full) // 2], "ok")
    return expected


def test_bad_corpus_runs_to_completion_and_accounts_for_every_file(tmp_path):
    expected = make_bad_corpus(str(tmp_path / "corpus"))
    out = str(tmp_path / "out")
    result = prepare.run(["--input", str(tmp_path / "corpus"), "--output", out],
                         test_pipeline=TestPipeline())
    stats = load_json(out, "stats.json")
    dead = {os.path.basename(d["path"]): d for d in read_dead_letter(out)}
    ok_sources = {os.path.basename(r["source"]) for s in SPLITS for r in read_examples(out, s)}
    outcome = {name: dead[name]["reason"] if name in dead else ("ok" if name in ok_sources else "LOST")
               for name in expected}
    assert outcome == expected
    assert stats["files_matched"] == len(expected) == stats["files_ok"] + stats["files_failed"]
    assert stats["failures_by_reason"] == dict(collections.Counter(
        v for v in expected.values() if v != "ok"))
    assert all({"path", "stage", "reason", "detail"} <= set(d) for d in dead.values())
    assert counter(result, "files_failed") == len(dead)
    assert counter(result, "failed_decode_error") == 4
    padded = [r for s in SPLITS for r in read_examples(out, s) if r["padded"]]
    assert [os.path.basename(r["source"]) for r in padded] == ["short_0.05s.wav"]
    assert padded[0]["end_s"] == pytest.approx(0.05, abs=1e-3)


def test_every_file_failing_exits_with_one_line(tmp_path, capsys):
    os.makedirs(tmp_path / "c" / "x")
    (tmp_path / "c" / "x" / "a.wav").write_bytes(b"")
    (tmp_path / "c" / "x" / "b.wav").write_bytes(b"junk" * 100)
    with pytest.raises(UserError, match=r"all 2 files failed .*dead_letter.jsonl"):
        prepare.main(["--input", str(tmp_path / "c"), "--output", str(tmp_path / "out")])


def _small_corpus(root, per_label=12):
    corpus = shared_path("data", "snoring")
    for label in ("snore", "not_snore"):
        os.makedirs(os.path.join(root, label))
        for name in sorted(os.listdir(os.path.join(corpus, label)))[:per_label]:
            shutil.copy(os.path.join(corpus, label, name), os.path.join(root, label, name))
    # 8 patches: 7 whole ones, and the tail window (6.72-7.695 s) holds 0.58 s of the clip,
    # over half of it (model.window_labels)
    write(os.path.join(root, "snore", "long.wav"), tone(7.3, 44100, 2), 44100)
    return root


def _example_set(out):
    return sorted((s, r["recording_key"], round(float(r["start_s"]), 3), r["label"],
                   r["log_mel"].tobytes()) for s in SPLITS for r in read_examples(out, s))


@pytest.mark.slow
def test_multi_processing_gives_the_same_examples_as_in_process(tmp_path):
    corpus = _small_corpus(str(tmp_path / "corpus"))
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    prepare.run(["--input", corpus, "--output", one])
    prepare.run(["--input", corpus, "--output", two, "--direct_num_workers=2",
                 "--direct_running_mode=multi_processing"])
    a, b = _example_set(one), _example_set(two)
    assert len(a) == 24 + 8 and a == b
    def counts(out):  # shard names follow the worker count; everything counted must not
        return {k: v for k, v in load_json(out, "stats.json").items() if k != "shards"}
    assert counts(one) == counts(two)


def test_manifest_with_groups_relative_paths_and_split_flag(tmp_path):
    corpus = _small_corpus(str(tmp_path / "corpus"), per_label=6)
    rows = [("snore/long.wav", "snore", "night1")]
    for label in ("snore", "not_snore"):
        for i, name in enumerate(sorted(os.listdir(os.path.join(corpus, label)))):
            if name.endswith(".flac"):
                rows.append((f"{label}/{name}", label, "night1" if i % 2 else ""))
    manifest = os.path.join(corpus, "labels.csv")
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    out = str(tmp_path / "out")
    prepare.run(["--manifest", manifest, "--output", out, "--split", "34/33/33"])
    examples = [(s, r) for s in SPLITS for r in read_examples(out, s)]
    assert len({r["source"] for _, r in examples}) == len(rows)
    night1 = {s for s, r in examples if r["recording_key"] == "night1"}
    assert len(night1) == 1, "a group spans two splits"
    assert load_json(out, "features.json")["split_fractions"]["train"] == pytest.approx(0.34)


@pytest.mark.parametrize("rows,message", [
    ("path,label\n../outside.wav,x\n", "escapes the manifest's folder"),
    ("path,label\na.wav,\n", "line 2: empty path or label"),
    ("file,label\na.wav,x\n", "needs a header with columns path,label"),
    ("path,label\n", "has no rows"),
])
def test_malformed_manifests_are_user_errors(tmp_path, rows, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(rows)
    with pytest.raises(UserError, match=message):
        prepare.run(["--manifest", str(manifest), "--output", str(tmp_path / "out")])


def test_missing_input_and_empty_match_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        prepare.run(["--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UserError, match="no files matched"):
        prepare.run(["--input", str(tmp_path / "empty"), "--output", str(tmp_path / "o")])
    with pytest.raises(UserError, match="no files matched"):
        prepare.run(["--input", str(tmp_path / "*.wav"), "--output", str(tmp_path / "o")])
