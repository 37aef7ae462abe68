"""Text formats of labeled segments: the combined CSV and JSONL, Raven selection tables,
Audacity label tracks. Pure functions; fixed number formatting so outputs are byte-stable."""
import json

CSV_HEADER = "file,start_s,end_s,label,confidence,model_id\n"
RAVEN_HEADER = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
                "High Freq (Hz)\tLabel\tConfidence\n")
FORMATS = ("csv", "raven", "audacity", "jsonl")


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_row(file: str, seg, model_id: str) -> str:
    return (f"{_csv_field(file)},{seg.start_s:.3f},{seg.end_s:.3f},{_csv_field(seg.label)},"
            f"{seg.confidence:.4f},{model_id}\n")


def jsonl_row(file: str, seg, model_id: str) -> str:
    return json.dumps({"file": file, "start_s": seg.start_s, "end_s": seg.end_s,
                       "label": seg.label, "confidence": seg.confidence,
                       "model_id": model_id}, sort_keys=True) + "\n"


def raven_table(segments, low_hz: float, high_hz: float) -> str:
    rows = [f"{i}\tSpectrogram 1\t1\t{s.start_s:.3f}\t{s.end_s:.3f}\t{low_hz:.1f}\t{high_hz:.1f}\t"
            f"{s.label}\t{s.confidence:.4f}\n" for i, s in enumerate(segments, start=1)]
    return RAVEN_HEADER + "".join(rows)


def audacity_labels(segments) -> str:
    return "".join(f"{s.start_s:.6f}\t{s.end_s:.6f}\t{s.label}\n" for s in segments)
