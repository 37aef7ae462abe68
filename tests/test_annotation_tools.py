"""`earmark prepare --annotations` on tables written the way Raven Pro, BirdNET-Analyzer,
Audacity and spreadsheets write them, and on every kind of row it cannot use.

Each table is written here from a list of events (the independent reading of the table);
the label of every window prepare writes is compared with the label those events give it
under the documented rule (docs/prepare.md), computed here without earmark's code; and no
window overlapping a row that could not be used is ever written, as background or else.
"""
import collections
import math

import pytest

from earmark.model.features import FeatureConfig
from earmark.pipelines import prepare
from tests.audio_fixtures import tone, write
from tests.prepared import load_json, read_dead_letter, read_examples

RATE_HZ = 16000
SECONDS = 10.0
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Annotation", "Notes"]
BIRDNET_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                   "Low Freq (Hz)", "High Freq (Hz)", "Common Name", "Species Code",
                   "Confidence", "Begin Path", "File Offset (s)"]


# ------------------------------------------------------------ tables as the tools write them

def raven_table(events, columns=RAVEN_COLUMNS, label_column="Annotation"):
    """Raven Pro: a header ending in a tab, one Spectrogram and one Waveform row per
    selection, empty trailing cells left out (the Waveform row stops after its times), CRLF."""
    lines = ["\t".join(columns) + "\t"]
    for n, (start, end, label) in enumerate(events, start=1):
        cells = {"Selection": n, "View": "Spectrogram 1", "Channel": 1, "Begin Time (s)": start,
                 "End Time (s)": end, "Low Freq (Hz)": 100, "High Freq (Hz)": 4000,
                 label_column: label}
        row = [str(cells.get(c, "")) for c in columns]
        while row and not row[-1]:
            row.pop()
        lines.append("\t".join(row))
        lines.append(f"{n}\tWaveform 1\t1\t{start}\t{end}")
    return "\r\n".join(lines) + "\r\n"


def birdnet_table(rows):
    """BirdNET-Analyzer's selection table: Begin Path (the analysed file's full path, on
    the machine that ran it) and File Offset (s)."""
    lines = ["\t".join(BIRDNET_COLUMNS)]
    for n, (start, end, label, path) in enumerate(rows, start=1):
        lines.append("\t".join(str(c) for c in (
            n, "Spectrogram 1", 1, start, end, 0, 15000, label, "code", 0.91, path, start)))
    return "\n".join(lines) + "\n"


def audacity_track(events):
    """Audacity: start, end, label; a spectral selection adds a `\\` frequency line."""
    return "".join(f"{start:.6f}\t{end:.6f}\t{label}\n\\\t150.000000\t3900.000000\n"
                   for start, end, label in events)


def csv_table(header, rows):
    import csv
    import io
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# ------------------------------------------------------------ the independent rule

def expected_windows(events, ignore, config, extent="full", negatives=(), background="background"):
    """{start_s: labels} of the windows a recording of SECONDS should give, under the rule
    of docs/prepare.md: a window covered at least half (of itself, or of a shorter event)
    by events of one label set gets them; touched less, or touching a span of a row that
    could not be used: left out; touching no event: background (extent full), or only when
    negative selections cover half of it (extent selections)."""
    window_s = config.patch_samples / config.sample_rate_hz
    hop_s = config.patch_hop_samples / config.sample_rate_hz
    count = 1 + math.ceil((SECONDS - window_s) / hop_s - 1e-9)
    out = {}
    for k in range(count):
        a, b = k * hop_s, k * hop_s + window_s
        if any(min(b, e) > max(a, s) for s, e in ignore):
            continue
        over = [(min(b, e) - max(a, s), min(window_s, e - s), label)
                for s, e, label in events if min(b, e) > max(a, s)]
        covered = {label for o, length, label in over if o >= 0.5 * length - 1e-9}
        if over:
            if covered and all(label in covered for _, _, label in over):
                out[round(a, 3)] = tuple(sorted(covered))
            continue
        negative = sum(max(0.0, min(b, e) - max(a, s)) for s, e in negatives)
        if negative >= 0.5 * window_s - 1e-9 or extent == "full":
            out[round(a, 3)] = (background,)
    return out


def written_windows(out):
    """{recording key: {start_s: label names}} of every window prepare wrote."""
    labels = load_json(out, "features.json")["labels"]
    found = collections.defaultdict(dict)
    for split in ("train", "validation", "test"):
        for r in read_examples(out, split):
            found[r["recording_key"]][round(float(r["start_s"]), 3)] = \
                tuple(sorted(labels[int(i)] for i in r["labels"]))
    return found


def config_of(out):
    return FeatureConfig.from_dict(load_json(out, "features.json")["feature_config"])


# ------------------------------------------------------------ the corpus

GOOD = (1.0, 2.0, "snore")  # every failure-kind table also holds a good event
FAILED_SPAN = (5.0, 6.0)    # where its failed row is

# recording → (table name, table bytes, events it holds, spans left out, left out whole)
CASES = {
    "raven.wav": ("raven.Table.1.selections.txt",
                  raven_table([(1.0, 2.5, "snore"), (6.0, 7.2, "snore")]).encode(),
                  [(1.0, 2.5, "snore"), (6.0, 7.2, "snore")], [], False),
    "windows.wav": ("windows.Table.1.selections.txt",
                    raven_table([(2.0, 3.0, "râle")]).encode("cp1252"),
                    [(2.0, 3.0, "râle")], [], False),
    "utf16.wav": ("utf16.selections.txt", raven_table([(4.0, 5.5, "snore")]).encode("utf-16"),
                  [(4.0, 5.5, "snore")], [], False),
    "audacity.wav": ("audacity.audacity.txt",
                     audacity_track([(0.5, 1.5, "cough"), (7.0, 8.0, "snore")]).encode(),
                     [(0.5, 1.5, "cough"), (7.0, 8.0, "snore")], [], False),
    "csvrec.wav": ("notes.csv", csv_table(
        ["file", "start_s", "end_s", "label", "comment"],
        [["csvrec.wav", 2, 3.5, "snore", "loud, then quiet"]]).encode(),
        [(2.0, 3.5, "snore")], [], False),
    # failure kinds
    "blank.wav": ("blank.Table.1.selections.txt", raven_table([GOOD, (*FAILED_SPAN, "  ")]).encode(),
                  [GOOD], [FAILED_SPAN], False),
    "nolabel.wav": ("nolabel.Table.1.selections.txt",  # the label cell left out: a short row
                    raven_table([GOOD, (*FAILED_SPAN, "")]).encode(), [GOOD], [FAILED_SPAN], False),
    "backwards.wav": ("backwards.txt", audacity_track([GOOD]).encode() + b"6.0\t5.0\tsnore\n",
                      [GOOD], [FAILED_SPAN], False),
    "pastend.wav": ("pastend.csv", b"start_s,end_s,label\n1,2,snore\n9.5,12,snore\n",
                    [GOOD], [(9.5, 12.0)], False),
    "badtime.wav": ("badtime.csv", b"start_s,end_s,label\n1,2,snore\nfive,6,snore\n",
                    [GOOD], [], True),
    "garbled.wav": ("garbled.txt", b"1\t2\tsnore\n5\t6\tr\x81le\n", [GOOD], [], True),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    rec, ann = root / "recordings", root / "annotations"
    (rec / "x").mkdir(parents=True), (rec / "y").mkdir(), (ann / "x").mkdir(parents=True)
    names = list(CASES) + ["seq_a.wav", "seq_b.wav", "x/dup.wav", "y/dup.wav"]
    for name in names:
        write(str(rec / name), tone(SECONDS, RATE_HZ), RATE_HZ)
    for table, data, *_ in CASES.values():
        (ann / table).write_bytes(data)
    # Raven's multi-file table: Begin Time runs through the sequence (seq_a is 10 s), File
    # Offset is the time in each file, Begin Path a Windows path from the annotator's machine
    (ann / "sequence.selections.txt").write_text(
        "Selection\tView\tBegin Time (s)\tEnd Time (s)\tBegin Path\tFile Offset (s)\tAnnotation\n"
        "1\tSpectrogram 1\t3.0\t4.0\tD:\\field\\seq_a.wav\t3.0\tsnore\n"
        "2\tSpectrogram 1\t11.0\t12.5\tD:\\field\\seq_b.wav\t1.0\tcough\n")
    # x/dup.wav and y/dup.wav each have a table; a CSV row naming "dup.wav" could be either
    (ann / "x" / "dup.txt").write_text("1\t2\tsnore\n")
    (ann / "y_dup.csv").write_text("file,start_s,end_s,label\ny/dup.wav,1,2,snore\n"
                                   "dup.wav,5,6,snore\n")
    out = str(root / "out")
    stats = prepare.main(["--input", str(rec), "--annotations", str(ann), "--output", out])
    return {"rec": rec, "ann": ann, "out": out, "stats": stats}


EXPECTED_EVENTS = {
    **{name: case[2] for name, case in CASES.items() if not case[4]},
    "seq_a.wav": [(3.0, 4.0, "snore")], "seq_b.wav": [(1.0, 2.5, "cough")],
    "x/dup.wav": [GOOD], "y/dup.wav": [GOOD],
}
EXPECTED_IGNORED = {**{name: case[3] for name, case in CASES.items()},
                    "x/dup.wav": [FAILED_SPAN], "y/dup.wav": [FAILED_SPAN]}


def test_every_window_matches_an_independent_reading_of_its_table(corpus):
    written = written_windows(corpus["out"])
    config = config_of(corpus["out"])
    assert set(written) == set(EXPECTED_EVENTS)
    for name, events in EXPECTED_EVENTS.items():
        expected = expected_windows(events, EXPECTED_IGNORED.get(name, []), config)
        assert written[name] == expected, name


def test_no_failure_kind_puts_a_window_over_its_row(corpus):
    written = written_windows(corpus["out"])
    window_s = config_of(corpus["out"]).patch_samples / RATE_HZ
    for name, (_, _, _, spans, whole) in CASES.items():
        if whole:
            assert name not in written, name
        for s, e in spans:
            assert not [a for a in written[name] if min(a + window_s, e) > max(a, s)], name
    dead = read_dead_letter(corpus["out"])
    reasons = collections.Counter(d["reason"] for d in dead)
    assert reasons == {"no_label": 2, "end_not_after_start": 1, "past_end": 1, "bad_row": 1,
                       "undecodable": 1, "ambiguous_recording": 1, "unusable_annotations": 2}
    assert sorted(d["path"].rsplit("/", 1)[-1] for d in dead
                  if d["reason"] == "unusable_annotations") == ["badtime.wav", "garbled.wav"]


def test_the_import_summary_accounts_for_every_row(corpus, capsys):
    a = corpus["stats"]["annotations"]
    per_table = {t["table"].rsplit("/annotations/", 1)[-1]: t for t in a["per_table"]}
    assert len(per_table) == a["tables"] == len(CASES) + 3
    for t in per_table.values():
        assert t["rows"] == t["events"] + t["events_left_out"] + sum(t["failed_by_reason"].values())
    assert a["read"] == a["events_used"] + a["events_left_out"] + a["failed"]
    assert per_table["windows.Table.1.selections.txt"]["encoding"] == "cp1252"
    assert per_table["utf16.selections.txt"]["encoding"] == "utf-16"
    assert per_table["sequence.selections.txt"] == dict(
        per_table["sequence.selections.txt"], rows=2, events=2, recordings=2, failed_by_reason={})
    assert per_table["pastend.csv"]["failed_by_reason"] == {"past_end": 1}
    assert per_table["badtime.csv"] == dict(per_table["badtime.csv"], rows=2, events=0,
                                            events_left_out=1, recordings_left_out=1)
    assert per_table["y_dup.csv"]["failed_by_reason"] == {"ambiguous_recording": 1}
    prepare.summarize(corpus["out"])
    printed = capsys.readouterr().out
    assert "windows.Table.1.selections.txt (Raven, cp1252): 1 rows, 1 events used" in printed


def test_birdnet_tables_as_verified_selections(tmp_path):
    """BirdNET-Analyzer's tables (named after the recording, Begin Path from another
    machine), read as reviewed detections: only the selections are known; a selection
    labeled as a negative is a background example, everything else is left out."""
    rec, ann = tmp_path / "recordings", tmp_path / "annotations"
    rec.mkdir(), ann.mkdir()
    for name in ("bn.wav", "bn2.wav"):
        write(str(rec / name), tone(SECONDS, RATE_HZ), RATE_HZ)
    (ann / "bn.BirdNET.selection.table.txt").write_text(birdnet_table(
        [(1.0, 4.0, "Sora", "/home/someone/audio/bn.wav"),
         (5.0, 8.0, "Noise", "/home/someone/audio/bn.wav")]))
    (ann / "bn2.BirdNET.results.csv").write_text(csv_table(
        ["Start (s)", "End (s)", "Scientific name", "Common name", "Confidence", "File"],
        [[0.0, 3.0, "Porzana carolina", "Sora", 0.8, "C:\\audio\\bn2.wav"],
         [3.0, 6.0, "", "not_Sora", 0.0, "C:\\audio\\bn2.wav"]]))
    out = str(tmp_path / "out")
    prepare.main(["--input", str(rec), "--annotations", str(ann), "--output", out,
                  "--label-column", "Common Name", "--annotated-extent", "selections",
                  "--negative-label", "Noise"])
    features = load_json(out, "features.json")
    assert features["labels"] == ["Sora", "background"]
    assert features["background_labels"] == ["background"]
    assert features["annotations"]["annotated_extent"] == "selections"
    written, config = written_windows(out), config_of(out)
    assert written["bn.wav"] == expected_windows(
        [(1.0, 4.0, "Sora")], [], config, "selections", negatives=[(5.0, 8.0)])
    assert written["bn2.wav"] == expected_windows(
        [(0.0, 3.0, "Sora")], [], config, "selections", negatives=[(3.0, 6.0)])
    # the windows after 8 s (bn) and 6 s (bn2) were never reviewed: none is written
    assert max(written["bn.wav"]) < 8.0 and max(written["bn2.wav"]) < 6.0
    left_out = load_json(out, "stats.json")["windows_left_out"]
    assert sum(s.get("outside_selections", 0) for s in left_out.values()) > 0
