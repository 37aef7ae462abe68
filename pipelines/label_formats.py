"""What `earmark label` writes, in one place: the names of its output files, and each text
format's writer beside its one reader: the combined `segments.csv` and `segments.jsonl`,
the per-window scores CSVs (`scores/`), Raven selection tables and Audacity label tracks;
and `OUTPUT_FORMATS`, the one table of formats (name → where its files go, writer, reader)
that `--formats`, `earmark label` and `earmark report` read.

Pure functions over text: no Beam and no TensorFlow, so `earmark report` and the demo
read with them too. Numbers have a fixed formatting, so outputs are byte-stable; CSV goes
through the `csv` module, so a file name or label holding a comma, a double quote or a
line break survives the round trip.
"""
import csv
import dataclasses
import io
import json

import numpy as np

from earmark.model import annotations
from earmark.model.data_files import DEAD_LETTER_FILE  # noqa: F401 (a label output too)
from earmark.model.segments import Segment

RUN_FILE = "run.json"              # the run's summary: model, post-processing, counts
SEGMENTS_CSV = "segments.csv"      # every segment, sorted by file then start
SEGMENTS_JSONL = "segments.jsonl"  # the same, one JSON object a line

CSV_COLUMNS = ("file", "start_s", "end_s", "label", "confidence", "model_id")
RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
                "High Freq (Hz)\tLabel\tConfidence\n")


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


# --- the table of output formats ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """One output file format: where its files go, its writer and its reader, side by side.
    A combined table is `file` at the top of the output; a per-recording file is
    FOLDER/<outputs.recording_name>SUFFIX, always inside the output."""
    write: object   # (segments, facts) → text; facts: a dict with at least the recording's
                    # scores, labels and hop_s and the spectrogram's low_hz and high_hz
    read: object    # text → what `write` wrote (segments, scores or annotation rows)
    file: str = ""
    folder: str = ""
    suffix: str = ""
    choice: bool = True   # one of --formats (scores/ come with --scores instead)

    def path(self, name: str = "") -> str:
        """The file's path relative to the output (`name`: the recording's output name)."""
        return f"{self.folder}/{name}{self.suffix}" if self.folder else self.file


# format name → OutputFormat. Adding a format is one entry here (and its writer and reader
# above); `--formats`, `earmark label` and `earmark report` read the rest from it.
OUTPUT_FORMATS = {
    "csv": OutputFormat(lambda segs, facts: segments_csv(segs), read_segments_csv,
                        file=SEGMENTS_CSV),
    "raven": OutputFormat(lambda segs, facts: raven_table(segs, facts["low_hz"],
                                                          facts["high_hz"]),
                          lambda text: annotations.parse_raven(text, "", "Label"),
                          folder="raven", suffix=".selections.txt"),
    "audacity": OutputFormat(lambda segs, facts: audacity_labels(segs),
                             lambda text: annotations.parse_audacity(text, ""),
                             folder="audacity", suffix=".txt"),
    "jsonl": OutputFormat(lambda segs, facts: segments_jsonl(segs), read_segments_jsonl,
                          file=SEGMENTS_JSONL),
    "scores": OutputFormat(lambda segs, facts: scores_csv(facts["scores"], facts["labels"],
                                                          facts["hop_s"]),
                           read_scores_csv, folder="scores", suffix=".csv", choice=False),
}
# `embeddings`: every window's embedding and scores as Parquet shards under `embeddings/`,
# written by the one Parquet writer of `earmark embed` (`pipelines/embeddings_io.py`), not a
# text format of segments: a --formats choice outside OUTPUT_FORMATS
EMBEDDINGS = "embeddings"
FORMATS = tuple(name for name, f in OUTPUT_FORMATS.items() if f.choice) + (EMBEDDINGS,)  # --formats choices
# per-recording outputs: format → (folder, suffix)
PER_RECORDING = {name: (f.folder, f.suffix) for name, f in OUTPUT_FORMATS.items() if f.folder}
# combined tables: format → file name (in table order: segments.csv first)
COMBINED = {name: f.file for name, f in OUTPUT_FORMATS.items() if f.file}


def per_recording_files(name: str, formats, scores: bool) -> dict:
    """{format: path relative to the output} of one recording's per-recording files:
    those `formats` asks for, and scores/ when `scores`."""
    return {f: OUTPUT_FORMATS[f].path(name) for f in PER_RECORDING
            if (f in formats if OUTPUT_FORMATS[f].choice else scores)}


def table_names(formats) -> list:
    """The combined tables' names that `formats` asks for, in table order."""
    return [file for f, file in COMBINED.items() if f in formats]


def tables(segments, formats) -> dict:
    """{name: bytes} of the combined tables of `segments` that `formats` asks for."""
    return {file: OUTPUT_FORMATS[f].write(segments, {}).encode()
            for f, file in COMBINED.items() if f in formats}

