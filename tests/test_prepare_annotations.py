"""`earmark prepare --annotations`: Raven, Audacity and CSV annotations of long recordings
become labeled windows; every annotation and every recording is used or dead-lettered."""
import collections
import os

import numpy as np
import pytest

from earmark.model.errors import UserError
from earmark.pipelines import prepare
from tests.audio_fixtures import tone, write
from tests.prepared import load_json, read_dead_letter, read_examples

SPLITS = ("train", "validation", "test")
RAVEN_HEAD = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
              "High Freq (Hz)\tAnnotation\tSpecies\tNotes\r\n")


def raven_row(selection, view, start, end, annotation, species="", notes=""):
    return f"{selection}\t{view}\t1\t{start}\t{end}\t0\t8000\t{annotation}\t{species}\t{notes}\r\n"


@pytest.fixture
def annotated(tmp_path):
    rec, ann = tmp_path / "recordings", tmp_path / "annotations"
    (rec / "room 1").mkdir(parents=True), ann.mkdir()
    for name in ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "unannotated.wav"):
        write(str(rec / name), tone(10.0, 16000), 16000)
    write(str(rec / "room 1" / "nuit [été].flac"), tone(6.0, 44100, 2), 44100, "FLAC")
    # Raven, both views per selection, extra columns, CRLF; one event past the 10-s end
    (ann / "a.Table.1.selections.txt").write_text(
        RAVEN_HEAD + raven_row(1, "Spectrogram 1", 1.0, 3.0, "snore", "Homo", "loud")
        + raven_row(1, "Waveform 1", 1.0, 3.0, "snore", "Homo", "loud")
        + raven_row(2, "Spectrogram 1", 5.0, 7.0, "cough")
        + raven_row(2, "Waveform 1", 5.0, 7.0, "cough")
        + raven_row(3, "Spectrogram 1", 9.5, 12.0, "snore"), newline="")
    # one table for two recordings, by a Begin File column
    (ann / "combined.selections.txt").write_text(
        "Selection\tView\tBegin Time (s)\tEnd Time (s)\tBegin File\tAnnotation\n"
        "1\tSpectrogram 1\t2.0\t4.0\tb.wav\tsnore\n"
        "2\tSpectrogram 1\t1.0\t2.5\tnuit [été].flac\tsnore\n")
    # Audacity with a spectral-selection frequency line and a point label (end == start)
    (ann / "c.txt").write_text("1.000000\t3.000000\tsnore\n\\\t100.0\t2000.0\n"
                               "4.0\t4.0\tsnore\n")
    # CSV: overlapping events of two labels, a recording that does not exist
    (ann / "more.csv").write_text("file,start_s,end_s,label\nd.wav,2,6,snore\nd.wav,2,6,cough\n"
                                  "ghost.wav,1,2,snore\n")
    # a row whose time cannot be read: e.wav's snore there could train as background, so
    # e.wav is left out whole (its good row too)
    (ann / "e.csv").write_text("start_s,end_s,label\nx,6,snore\n1,2,snore\n")
    return rec, ann


def examples_by_recording(out):
    found = collections.defaultdict(list)
    for split in SPLITS:
        for r in read_examples(out, split):
            found[r["recording_key"]].append((round(float(r["start_s"]), 2), tuple(r["labels"])))
    return found


def test_every_annotation_and_recording_is_used_or_dead_lettered(annotated, tmp_path):
    rec, ann = annotated
    out = str(tmp_path / "out")
    stats = prepare.main(["--input", str(rec), "--annotations", str(ann), "--output", out])
    features = load_json(out, "features.json")
    assert features["labels"] == ["background", "cough", "snore"]
    assert features["background_labels"] == ["background"]
    # recordings: 5 annotated, 1 left out for an unreadable row, 1 without any table
    assert stats["files_matched"] == 7 and stats["files_ok"] == 5 and stats["files_failed"] == 2
    assert stats["failures_by_reason"] == {"not_annotated": 1, "unusable_annotations": 1}
    dead = read_dead_letter(out)
    by_reason = collections.Counter(d["reason"] for d in dead)
    assert by_reason == {"not_annotated": 1, "past_end": 1, "end_not_after_start": 1,
                         "bad_row": 1, "missing_recording": 1, "unusable_annotations": 1}
    past = next(d for d in dead if d["reason"] == "past_end")
    assert past["path"].endswith("a.Table.1.selections.txt") and past["line"] == 6
    unusable = next(d for d in dead if d["reason"] == "unusable_annotations")
    assert unusable["path"].endswith("e.wav") and "e.csv line 2" in unusable["detail"]
    # annotations: a 2 + 1 past the end, combined 2, c 1 + 1 point, more.csv 2 + 1 ghost,
    # e.csv 1 bad + 1 left out with e.wav
    a = stats["annotations"]
    assert a["tables"] == 5 and a["read"] == a["events_used"] + a["events_left_out"] + a["failed"]
    assert (a["events_used"], a["events_left_out"], a["failed"]) == (7, 1, 4)
    labels_of = examples_by_recording(out)
    assert "e.wav" not in labels_of
    # c.txt's point label at 4 s is a row it cannot use: windows touching it are left out
    assert labels_of["c.wav"] and all(not s < 4.0 < s + 0.975 for s, _ in labels_of["c.wav"])
    # overlapping snore and cough on d.wav give multi-label windows (indices 1 and 2)
    assert any(set(l) == {1, 2} for _, l in labels_of["d.wav"])
    # the event past the end (9.5-12 s on a 10-s file) labels nothing and is not background
    assert all(s + 0.975 <= 9.5 or s >= 10.0 for s, _ in labels_of["a.wav"])
    assert {l for _, l in labels_of["a.wav"]} == {(0,), (1,), (2,)}
    assert {l for _, l in labels_of["room 1/nuit [été].flac"]} == {(0,), (2,)}
    windows = sum(v["patches"] for s in stats["splits"].values() for v in s.values())
    assert windows == sum(len(v) + sum(len(l) > 1 for _, l in v) for v in labels_of.values())


def test_a_table_that_cannot_be_read_leaves_its_recording_out_never_all_background(tmp_path):
    """Undecodable, or no label column: the recording is not "annotated with no events"."""
    from earmark.pipelines import corpus
    rec, ann = tmp_path / "recordings", tmp_path / "annotations"
    rec.mkdir(), ann.mkdir()
    for name in ("garbled.wav", "nolabel.wav", "good.wav", "blank.wav"):
        write(str(rec / name), tone(3.0, 16000), 16000)
    (ann / "garbled.Table.1.selections.txt").write_bytes(  # neither UTF-8 nor Windows-1252
        b"Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n1\t1\t2\tr\x81le\n")
    (ann / "nolabel.csv").write_text("start_s,end_s,what\n1,2,snore\n")
    (ann / "good.csv").write_text("start_s,end_s,label\n1,2,snore\n2.5,2.5,snore\n")
    (ann / "blank.Table.1.selections.txt").write_text(
        "Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n")   # no events: all background
    found = corpus.list_annotated(str(rec), str(ann), "Annotation")
    assert sorted(r.key for r, _ in found.unusable) == ["garbled.wav", "nolabel.wav"]
    assert {r.key: r.ignore_s for r in found.recordings} == \
        {"good.wav": ((2.5, 2.501),), "blank.wav": ()}


def test_background_none_keeps_only_event_windows_and_label_column_chooses(annotated, tmp_path):
    rec, ann = annotated
    out = str(tmp_path / "out")
    prepare.main(["--input", str(rec), "--annotations", str(ann / "a.Table.1.selections.txt"),
                  "--output", out, "--background", "none", "--label-column", "Species"])
    features = load_json(out, "features.json")
    # Species is empty on the second and third selections: no_label rows
    assert features["labels"] == ["Homo"] and features["background_labels"] == []
    found = examples_by_recording(out)
    assert list(found) == ["a.wav"] and {l for _, l in found["a.wav"]} == {(0,)}
    reasons = collections.Counter(d["reason"] for d in read_dead_letter(out))
    assert reasons == {"no_label": 2, "not_annotated": 6}


def test_a_label_written_in_two_cases_is_one_label_spelled_as_most_rows_do(tmp_path, caplog):
    """`Snore` in one table and `snore` in two: one label, never two classes whose windows
    train as each other's negatives; the warning says which spelling was read as which."""
    rec, ann = tmp_path / "recordings", tmp_path / "annotations"
    rec.mkdir(), ann.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        write(str(rec / name), tone(6.0, 16000), 16000)
    (ann / "a.csv").write_text("start_s,end_s,label\n1,3,Snore\n")
    (ann / "b.csv").write_text("start_s,end_s,label\n1,3,snore\n4,5,Not_Snore\n")
    (ann / "c.csv").write_text("start_s,end_s,label\n2,4,snore\n4,5,not_snore\n0,1,not_snore\n")
    out = str(tmp_path / "out")
    prepare.main(["--input", str(rec), "--annotations", str(ann), "--output", out,
                  "--annotated-extent", "selections"])
    assert load_json(out, "features.json")["labels"] == ["background", "snore"]
    assert "'Not_Snore' (1 rows) as 'not_snore' (2), 'Snore' (1 rows) as 'snore' (2)" in caplog.text
    windows = {k: {l for _, l in v} for k, v in examples_by_recording(out).items()}
    assert windows["a.wav"] >= {(1,)} and all(l in {(0,), (1,)} for v in windows.values() for l in v)


def test_a_recording_annotated_in_a_small_part_is_named_in_a_warning(tmp_path, monkeypatch,
                                                                    capsys):
    """--annotated-extent full with a table that annotates the first seconds only: the
    summary warns that the rest trains as background (here at 1 s, not 30 min, of silence)."""
    from earmark.model import window_labels
    monkeypatch.setattr(window_labels, "PARTLY_ANNOTATED_MIN_S", 1.0)
    rec, ann = tmp_path / "recordings", tmp_path / "annotations"
    rec.mkdir(), ann.mkdir()
    for name in ("early.wav", "all.wav"):
        write(str(rec / name), tone(10.0, 16000), 16000)
    (ann / "early.csv").write_text("start_s,end_s,label\n1,2,snore\n")
    (ann / "all.csv").write_text("start_s,end_s,label\n1,2,snore\n4,5,snore\n7,8,snore\n")
    prepare.main(["--input", str(rec), "--annotations", str(ann), "--output",
                  str(tmp_path / "out")])
    warning = [l for l in capsys.readouterr().out.splitlines() if l.startswith("warning:")]
    assert warning == ["warning: 1 recording(s) look partly annotated: nothing is annotated in "
                       "at least half of each (e.g. early.wav: from 2s to 10s of 10s), and with "
                       "--annotated-extent full (the default) that time trains as background; "
                       "if it was not annotated, re-run with --annotated-extent selections "
                       "(only what the tables select is known)"]
    prepare.main(["--input", str(rec), "--annotations", str(ann), "--output",
                  str(tmp_path / "out2"), "--annotated-extent", "selections"])
    assert "partly annotated" not in capsys.readouterr().out


def test_a_missing_label_column_everywhere_is_a_one_line_error(annotated, tmp_path):
    rec, ann = annotated
    with pytest.raises(UserError, match="--label-column"):
        prepare.main(["--input", str(rec), "--annotations", str(ann / "a.Table.1.selections.txt"),
                      "--output", str(tmp_path / "o"), "--label-column", "Species Name"])


@pytest.mark.slow
def test_multi_label_windows_train_with_multi_label(annotated, tmp_path, capsys):
    from earmark.commands import train
    from tests.fixtures import train_args
    rec, ann = annotated
    out = str(tmp_path / "out")
    prepare.main(["--input", str(rec), "--annotations", str(ann), "--output", out,
                  "--split", "100/0/0"])
    capsys.readouterr()
    train.main(train_args(out, tmp_path / "single", tmp_path / "cache", "--epochs", "1"))
    assert "carry several labels" in capsys.readouterr().err
    meta = train.main(train_args(out, tmp_path / "multi", tmp_path / "cache", "--epochs", "1",
                                 "--multi-label"))
    assert meta["activation"] == "sigmoid"
    assert "carry several labels" not in capsys.readouterr().err
