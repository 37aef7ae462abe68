"""Builders for annotated night recordings from the shared snoring clips: clips split into
trained-on and held-out, nights built with ../shared/tools/make_night.py (its truth CSV is
the annotation), and that truth written as a Raven selection table."""
import csv
import os
import subprocess
import sys

from earmark.model.events import Event
from earmark.pipelines import label_formats
from tests.shared import SHARED, shared_path

HELD_OUT_EVERY = 8  # every 8th clip of the snoring set is never trained on


def split_snoring_clips(root) -> dict:
    """Write `train.csv` (path,label,group: 7/8 of the clips) and `held_out/labels.csv`
    (the rest, for make_night) under `root`; → their paths."""
    snoring = shared_path("data", "snoring")
    with open(os.path.join(snoring, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    held = os.path.join(root, "held_out")
    os.makedirs(held, exist_ok=True)
    parts = {"train": (os.path.join(root, "train.csv"), lambda i: i % HELD_OUT_EVERY),
             "held_out": (os.path.join(held, "labels.csv"), lambda i: not i % HELD_OUT_EVERY)}
    for path, keep in parts.values():
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "group"])  # group: the same split wherever shared/ is
            w.writerows([os.path.join(snoring, r["path"]), r["label"], r["path"]]
                        for i, r in enumerate(rows) if keep(i))
    return {"train_csv": parts["train"][0], "held_out": held}


def clip_folder(clips_csv, out_dir) -> str:
    """A make_night input folder (labels.csv with absolute paths) from a path,label CSV."""
    os.makedirs(out_dir, exist_ok=True)
    with open(clips_csv) as f, open(os.path.join(out_dir, "labels.csv"), "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["path", "label"])
        w.writerows([r["path"], r["label"]] for r in csv.DictReader(f))
    return out_dir


def make_night(clips_dir, out_wav, truth_csv, minutes, seed) -> list:
    """A night of `minutes` from the clips of `clips_dir`; → its true snore events."""
    subprocess.run([sys.executable, os.path.join(SHARED, "tools", "make_night.py"), clips_dir,
                    out_wav, "--truth", truth_csv, "--minutes", str(minutes), "--seed", str(seed)],
                   check=True, capture_output=True)
    return read_truth(truth_csv)


def read_truth(truth_csv) -> list:
    with open(truth_csv) as f:
        return [Event(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in csv.DictReader(f)]


def write_raven_table(events, path, label_column="Annotation") -> None:
    """A Raven Pro selection table of `events`, one row per view as Raven writes it."""
    with open(path, "w", newline="") as f:
        f.write("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\t"
                f"High Freq (Hz)\t{label_column}\r\n")
        for i, e in enumerate(events, start=1):
            for view in ("Spectrogram 1", "Waveform 1"):
                f.write(f"{i}\t{view}\t1\t{e.start_s:.3f}\t{e.end_s:.3f}\t0.0\t8000.0\t{e.label}\r\n")


def read_segments(segments_csv) -> list:
    """The events of a label run's segments.csv (read by `label_formats`, the writer's reader)."""
    with open(segments_csv, "rb") as f:
        return [Event(s.start_s, s.end_s, s.label)
                for s in label_formats.read_segments_csv(f.read().decode())]
