"""`earmark label --precision float32` against `--precision bfloat16`, side by side in one run:
the largest per-window score difference, event F1 of each on an annotated night, and the
speed of each (whole `earmark label` processes, start-up included).

    .venv/bin/python benchmarks/precision_parity.py --model MODEL_DIR --night NIGHT.wav \
        --truth TRUTH.csv [--precisions float32,bfloat16]

MODEL_DIR: a trained image-base model (`earmark train`); NIGHT.wav with TRUTH.csv
(start_s,end_s,label, as ../shared/tools/make_night.py writes) built from clips the model
did not train on. The night is labeled at the model's calibrated defaults.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from earmark.model import event_metrics  # noqa: E402
from earmark.model.events import Event  # noqa: E402
from earmark.pipelines import label_formats  # noqa: E402


def label(model, folder, out, precision):
    """One `earmark label --scores` process → (wall seconds, segments, {label: scores})."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "earmark", "label", "--model", model, "--input", folder,
                    "--output", out, "--scores", "--precision", precision],
                   check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    with open(os.path.join(out, "segments.csv"), "rb") as f:
        segments = [Event(s.start_s, s.end_s, s.label)
                    for s in label_formats.read_segments_csv(f.read().decode())]
    scores_dir = os.path.join(out, label_formats.PER_RECORDING["scores"][0])
    (name,) = os.listdir(scores_dir)
    with open(os.path.join(scores_dir, name)) as f:
        _, scores = label_formats.read_scores_csv(f.read())
    return wall, segments, scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--night", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--precisions", default="float32,bfloat16")
    args = ap.parse_args()
    with open(args.truth) as f:
        truth = [Event(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in csv.DictReader(f)]
    import soundfile
    audio_s = soundfile.info(args.night).duration
    rows = {}
    with tempfile.TemporaryDirectory(prefix="earmark-precision-") as work:
        folder = os.path.join(work, "night")
        os.makedirs(folder)
        shutil.copy(args.night, folder)
        for precision in args.precisions.split(","):
            rows[precision] = label(args.model, folder, os.path.join(work, precision), precision)
    reference = next(iter(rows))
    print(f"{os.path.basename(args.night)}: {audio_s / 60:.1f} min, {len(truth)} events; "
          f"model {args.model}; {os.cpu_count()} cores")
    print("| precision | x real time | event F1 (IoU 0.5) | precision / recall | "
          f"max per-window score difference vs {reference} |")
    print("|---|---|---|---|---|")
    for name, (wall, segments, scores) in rows.items():
        tp, n_truth, n_found = event_metrics.event_f1(truth, segments)
        p, r, f1 = event_metrics.f1(tp, n_truth, n_found)
        diff = max(float(np.abs(scores[k] - rows[reference][2][k]).max()) for k in scores)
        print(f"| {name} | {audio_s / wall:.1f} | {f1:.3f} | {p:.3f} / {r:.3f} | {diff:.4f} |")


if __name__ == "__main__":
    main()
