"""`earmark label --precision float32` against `--precision bfloat16` (and `int8`), side by
side in one run: the largest per-window score difference, event F1 of each on annotated
nights, and the speed of each (whole `earmark label` processes, start-up included).

    .venv/bin/python benchmarks/precision_parity.py --model MODEL_DIR --night NIGHT.wav \
        --truth TRUTH.csv [--precisions float32,bfloat16]
    .venv/bin/python benchmarks/precision_parity.py --nights DIR [--model MODEL_DIR] \
        [--precisions float32,bfloat16,int8]

MODEL_DIR: a trained image-base model (`earmark train`); NIGHT.wav with TRUTH.csv
(start_s,end_s,label, as ../shared/tools/make_night.py writes) built from clips the model
did not train on. `--nights DIR`: a `--workdir` of night_heads.py (nights/NAME.wav beside
DIR/NAME.truth.csv, the model default DIR/model_dropout). Each precision labels the folder
of nights in one `earmark label --scores` process at the model's calibrated defaults; event
F1 is printed per night and as the mean over nights.
"""
import argparse
import collections
import os
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
from tests import nights  # noqa: E402  (the truth reader the tests use)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import night_heads  # noqa: E402  (its --workdir layout)


def label(model, folder, out, precision):
    """One `earmark label --scores` process over `folder` → (wall seconds,
    {file: [Event]}, {scores file: {label: scores}})."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "earmark", "label", "--model", model, "--input", folder,
                    "--output", out, "--scores", "--precision", precision],
                   check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - t
    with open(os.path.join(out, "segments.csv"), "rb") as f:
        segments = collections.defaultdict(list)
        for s in label_formats.read_segments_csv(f.read().decode()):
            segments[s.file].append(Event(s.start_s, s.end_s, s.label))
    scores_dir = os.path.join(out, label_formats.PER_RECORDING["scores"][0])
    scores = {}
    for name in sorted(os.listdir(scores_dir)):
        with open(os.path.join(scores_dir, name)) as f:
            scores[name] = label_formats.read_scores_csv(f.read())[1]
    return wall, segments, scores


def annotated_nights(args) -> dict:
    """{night WAV path: truth events} from `--night/--truth` or `--nights`."""
    if not args.nights:
        return {args.night: nights.read_truth(args.truth)}
    return night_heads.workdir_nights(args.nights)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="required with --night; default DIR/model_dropout")
    ap.add_argument("--night")
    ap.add_argument("--truth")
    ap.add_argument("--nights", metavar="DIR", help="a night_heads.py --workdir")
    ap.add_argument("--precisions", default="float32,bfloat16")
    args = ap.parse_args()
    one_night = args.night or args.truth
    if (args.nights and one_night) or not (args.nights or args.night and args.truth and args.model):
        ap.error("give --model, --night and --truth, or --nights")
    model = args.model or night_heads.model_dir(args.nights)
    truths = annotated_nights(args)
    import soundfile
    audio_s = sum(soundfile.info(w).duration for w in truths)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="earmark-precision-") as work:
        folder = os.path.join(work, "nights")
        os.makedirs(folder)
        for wav in truths:
            os.symlink(os.path.abspath(wav), os.path.join(folder, os.path.basename(wav)))
        for precision in args.precisions.split(","):
            rows[precision] = label(model, folder, os.path.join(work, precision), precision)
    reference = next(iter(rows))
    print(f"{len(truths)} night(s), {audio_s / 60:.1f} min, "
          f"{sum(map(len, truths.values()))} events; model {model}; {os.cpu_count()} cores")
    print(f"per night, in this order: {', '.join(os.path.basename(w) for w in truths)}")
    print("| precision | x real time | mean event F1 (IoU 0.5) | per night | "
          f"max per-window score difference vs {reference} |")
    print("|---|---|---|---|---|")
    for name, (wall, segments, scores) in rows.items():
        f1s = [event_metrics.f1(*event_metrics.event_f1(
            truth, segments[os.path.basename(wav)]))[2] for wav, truth in truths.items()]
        diff = max(float(np.abs(s[k] - rows[reference][2][n][k]).max())
                   for n, s in scores.items() for k in s)
        print(f"| {name} | {audio_s / wall:.1f} | {np.mean(f1s):.3f} | "
              f"{' / '.join(f'{f:.3f}' for f in f1s)} | {diff:.4f} |")


if __name__ == "__main__":
    main()
