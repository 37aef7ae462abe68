"""What `earmark label` writes, in one place: the names of its output files, and each text
format's writer beside its one reader: the combined `segments.csv` and `segments.jsonl`,
the per-window scores CSVs (`scores/`), Raven selection tables and Audacity label tracks.

Pure functions over text: no Beam and no TensorFlow, so `earmark report` and the demo
read with them too. Numbers have a fixed formatting, so outputs are byte-stable; CSV goes
through the `csv` module, so a file name or label holding a comma, a double quote or a
line break survives the round trip.
"""
import csv
import io
import json

import numpy as np

from earmark.model.data_files import DEAD_LETTER_FILE  # noqa: F401 (a label output too)
from earmark.model.segments import Segment

RUN_FILE = "run.json"              # the run's summary: model, post-processing, counts
SEGMENTS_CSV = "segments.csv"      # every segment, sorted by file then start
SEGMENTS_JSONL = "segments.jsonl"  # the same, one JSON object a line
# per-recording outputs: format → (folder, suffix); a recording's file is
# FOLDER/<outputs.recording_name>SUFFIX, always inside the output
PER_RECORDING = {"raven": ("raven", ".selections.txt"), "audacity": ("audacity", ".txt"),
                 "scores": ("scores", ".csv")}

CSV_COLUMNS = ("file", "start_s", "end_s", "label", "confidence", "model_id")
RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
                "High Freq (Hz)\tLabel\tConfidence\n")
FORMATS = ("csv", "raven", "audacity", "jsonl")


def _csv_text(rows) -> str:
    """Rows (lists of str) as CSV text with "\\n" line ends. The writer ends its rows with
    "\\r\\n" so that it quotes a field holding "\\r" as well as "\\n" (it quotes the
    characters of its line end); each row's end is then written "\\n"."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        writer.writerow(row)
        lines.append(buffer.getvalue()[:-2] + "\n")
        buffer.seek(0)
        buffer.truncate()
    return "".join(lines)


def _csv_rows(text: str):
    return csv.reader(io.StringIO(text, newline=""))


# --- segments.csv ---------------------------------------------------------------------------

def segments_csv(segments) -> str:
    """segments.csv of `segments` (`Segment`s with their file and model_id), in the given
    order."""
    return _csv_text([CSV_COLUMNS] + [
        [s.file, f"{s.start_s:.3f}", f"{s.end_s:.3f}", s.label, f"{s.confidence:.4f}",
         s.model_id] for s in segments])


def read_segments_csv(text: str) -> list:
    """The `Segment`s of a segments.csv, in file order."""
    return [Segment(float(r["start_s"]), float(r["end_s"]), r["label"], float(r["confidence"]),
                    r["file"], r.get("model_id") or "")
            for r in csv.DictReader(io.StringIO(text, newline=""))]


# --- segments.jsonl -------------------------------------------------------------------------

def segments_jsonl(segments) -> str:
    """segments.jsonl of `segments`, one object a line (keys sorted), in the given order."""
    return "".join(json.dumps({"file": s.file, "start_s": s.start_s, "end_s": s.end_s,
                               "label": s.label, "confidence": s.confidence,
                               "model_id": s.model_id}, sort_keys=True) + "\n"
                   for s in segments)


def read_segments_jsonl(text: str) -> list:
    """The `Segment`s of a segments.jsonl, in file order."""
    out = []
    for line in text.split("\n"):  # json.dumps escapes every other line break
        if line.strip():
            r = json.loads(line)
            out.append(Segment(float(r["start_s"]), float(r["end_s"]), r["label"],
                               float(r["confidence"]), r["file"], r.get("model_id") or ""))
    return out


# --- scores/KEY.csv -------------------------------------------------------------------------

def scores_csv(scores, labels, hop_s: float) -> str:
    """One recording's per-window scores [windows, labels]: a `start_s` column (window k
    starts at k·hop), then one column per label."""
    return _csv_text([["start_s", *labels]] + [
        [f"{i * hop_s:.3f}", *(f"{v:.4f}" for v in row)] for i, row in enumerate(scores)])


def read_scores_csv(text: str):
    """(window starts [n], {label: scores [n]}) of a scores CSV; None when it holds no
    window."""
    rows = _csv_rows(text)
    header = next(rows, None)
    values = np.array([[float(v) for v in r] for r in rows if r], dtype=np.float64)
    if header is None or values.size == 0:
        return None
    return values[:, 0], {label: values[:, i + 1] for i, label in enumerate(header[1:])}


# --- Raven and Audacity (read back as annotations by `model/annotations.py`) -----------------

def raven_table(segments, low_hz: float, high_hz: float) -> str:
    rows = [f"{i}\tSpectrogram 1\t1\t{s.start_s:.3f}\t{s.end_s:.3f}\t{low_hz:.1f}\t{high_hz:.1f}\t"
            f"{s.label}\t{s.confidence:.4f}\n" for i, s in enumerate(segments, start=1)]
    return RAVEN_HEADER + "".join(rows)


def audacity_labels(segments) -> str:
    return "".join(f"{s.start_s:.6f}\t{s.end_s:.6f}\t{s.label}\n" for s in segments)
