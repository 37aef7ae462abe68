"""`model.splits`: whole recordings or time blocks within them; and prepare --split-by,
whose shards, recordings.jsonl and calibration stretches follow the blocks."""
import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf

from earmark.model import calibrate, data, splits
from earmark.model.events import Event
from earmark.pipelines import prepare
from tests.fixtures import BANDS_HZ, one_line_error
from tests.audio_fixtures import band_noise

FRACTIONS = (0.8, 0.1, 0.1)


def test_split_of_is_a_stable_hash_of_the_key():
    assert splits.split_of("night_0.wav") == splits.split_of("night_0.wav")
    keys = [f"rec_{i}.wav" for i in range(2000)]
    got = [splits.split_of(k, FRACTIONS) for k in keys]
    assert abs(got.count("validation") / len(keys) - 0.1) < 0.03
    assert {splits.split_of(k, (1.0, 0.0, 0.0)) for k in keys} == {"train"}


def test_auto_splits_by_time_when_whole_recordings_leave_validation_empty():
    few = ["a.wav", "b.wav", "c.wav"]                  # hashed: test, train, train
    assert "validation" not in {splits.split_of(k, FRACTIONS) for k in few}
    assert splits.split_by_for(few, FRACTIONS) == "time"
    many = [f"rec_{i}.wav" for i in range(40)]
    assert splits.split_by_for(many, FRACTIONS) == "recording"
    assert splits.split_by_for(few, FRACTIONS, "recording") == "recording"
    # the test split may stay empty: it is the user's to check on
    assert splits.split_by_for(["night_0.wav", "night_1.wav", "night_7.wav"], FRACTIONS) == \
        "recording"


def test_block_edges_never_cut_an_event():
    events = [Event(59.5, 61.0, "snore"), Event(118.0, 125.0, "snore"), Event(123.0, 130.0, "x")]
    edges = splits.block_edges(600.0, events)
    assert edges[0] == 0.0 and edges[-1] == 600.0 and edges == sorted(set(edges))
    assert len(edges) == 11
    assert 59.5 in edges and 118.0 in edges          # moved to the nearer end of the event
    for e in events:
        assert not any(e.start_s < t < e.end_s for t in edges)
    # a short tail joins the block before; a short recording is one block
    assert splits.block_edges(125.0) == [0.0, 60.0, 125.0]
    assert splits.block_edges(20.0) == [0.0, 20.0]


@pytest.mark.parametrize("blocks, counts", [(20, [16, 2, 2]), (5, [4, 1, 0]), (1, [1, 0, 0]),
                                            (10, [8, 1, 1]), (0, [0, 0, 0])])
def test_block_counts_by_largest_remainder(blocks, counts):
    assert splits.block_counts(blocks, FRACTIONS) == counts


def test_block_splits_cover_the_recording_in_the_fractions():
    events = [Event(t, t + 2.0, "snore") for t in np.arange(10.0, 1200.0, 25.0)]
    spans = splits.block_splits("night_0.wav", 1200.0, events, FRACTIONS)
    assert spans[0][0] == 0.0 and spans[-1][1] == 1200.0
    assert all(a[1] == b[0] and a[2] != b[2] for a, b in zip(spans, spans[1:]))
    seconds = {s: sum(b - a for a, b, split in spans if split == s) for s in ("train", "validation", "test")}
    assert seconds["validation"] == pytest.approx(120.0, abs=10) and seconds["test"] == pytest.approx(120.0, abs=10)
    assert splits.block_splits("night_0.wav", 1200.0, events, FRACTIONS) == spans   # stable
    assert splits.block_splits("night_1.wav", 1200.0, events, FRACTIONS) != spans   # per key
    assert splits.window_split(spans, 0.0, 1.0) == spans[0][2]
    # one block: the whole recording where its key hashes, not always train
    short = [f"clip_{i}.wav" for i in range(200)]
    got = {splits.block_splits(k, 80.0, (), FRACTIONS)[0][2] for k in short}
    assert got == {"train", "validation", "test"}
    assert all(splits.block_splits(k, 80.0, (), FRACTIONS) == [(0.0, 80.0, splits.split_of(k))]
               for k in short)
    edge = spans[1][0]
    assert splits.window_split(spans, edge - 0.5, edge + 0.5) is None


# ---------------------------------------------------------------- prepare --split-by

RATE = 16000
EVENT_EVERY_S = 20.0


def _annotated_corpus(root, names=("a.wav", "b.wav", "c.wav"), minutes=4):
    """Recordings of faint noise with a 1.5-s class_0 event every 20 s, one CSV table."""
    rng = np.random.default_rng(0)
    os.makedirs(root / "rec")
    rows = []
    for name in names:
        seconds = minutes * 60
        wave = (0.001 * rng.normal(size=seconds * RATE)).astype(np.float32)
        for t in np.arange(5.0, seconds - 2, EVENT_EVERY_S):
            i = int(t * RATE)
            wave[i:i + int(1.5 * RATE)] = band_noise(1.5, RATE, BANDS_HZ["class_0"], rng)
            rows.append([name, float(t), float(t) + 1.5, "class_0"])
        sf.write(root / "rec" / name, wave, RATE)
    with open(root / "events.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "start_s", "end_s", "label"]] + rows)
    return str(root / "rec"), str(root / "events.csv")


def test_prepare_splits_few_annotated_recordings_by_time(tmp_path):
    rec, table = _annotated_corpus(tmp_path)
    out = str(tmp_path / "prepared")
    stats = prepare.main(["--input", rec, "--annotations", table, "--output", out])
    with open(os.path.join(out, "features.json")) as f:
        assert json.load(f)["split_by"] == "time"
    with open(os.path.join(out, "recordings.jsonl")) as f:
        stretches = [json.loads(line) for line in f]
    # every recording gives every split some of its time (4 blocks: 3 / 1 / 0 or so)
    by_key = {}
    for r in stretches:
        a, b = r["span_s"]
        by_key.setdefault(r["key"], []).append((a, b, r["split"]))
        assert all(a <= s and e <= b for s, e, _ in r["events"])
    assert set(by_key) == {"a.wav", "b.wav", "c.wav"}
    for key, spans in by_key.items():
        spans.sort()
        assert spans[0][0] == 0.0 and spans[-1][1] == pytest.approx(240.0)
        assert {s for _, _, s in spans} >= {"train", "validation"}
    left_out = sum(v.get(splits.SPLIT_BOUNDARY, 0) for v in stats["windows_left_out"].values())
    assert left_out > 0
    # the shards hold each window in the split whose time holds it
    prepared = data.open_prepared(out)
    window_s = prepared.feature_config.patch_seconds
    for split in ("train", "validation"):
        arrays = data.read_split(prepared, split)
        for key, start in zip(arrays.recording_key, arrays.start_s):
            spans = by_key[key]
            assert splits.window_split(spans, float(start) + 1e-3, min(float(start) + window_s, 240.0) - 1e-3) == split
    # calibration gets the validation stretches, cut from their recordings
    val = data.read_recordings(prepared, "validation")
    assert val and all(not r.whole for r in val)
    seqs = calibrate.recording_sequences(val, RATE, "HQ", lambda p: open(p, "rb").read())
    for r, s in zip(sorted(val, key=lambda r: r.name), seqs):
        assert s.name == r.name and len(s.waveform) == pytest.approx(r.duration_s * RATE, abs=2)
        assert all(0 <= e.start_s < e.end_s <= r.duration_s for e in s.events)
    assert sum(len(s.events) for s in seqs) > 0


def test_split_by_recording_keeps_recordings_whole(tmp_path):
    rec, table = _annotated_corpus(tmp_path, minutes=2)
    out = str(tmp_path / "prepared")
    prepare.main(["--input", rec, "--annotations", table, "--output", out,
                  "--split-by", "recording"])
    with open(os.path.join(out, "recordings.jsonl")) as f:
        stretches = [json.loads(line) for line in f]
    assert len(stretches) == 3 and not any("span_s" in r for r in stretches)
    assert {r["key"]: r["split"] for r in stretches} == {
        k: splits.split_of(k) for k in ("a.wav", "b.wav", "c.wav")}


def test_split_by_needs_annotations(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    msg = one_line_error(capsys, ["prepare", "--input", str(tmp_path / "clips"), "--output",
                                  str(tmp_path / "out"), "--split-by", "time"])
    assert "--split-by time" in msg and "--annotations" in msg
