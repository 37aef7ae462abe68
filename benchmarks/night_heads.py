"""Event quality at the defaults, per head, on several held-out nights, side by side in one run.

    .venv/bin/python benchmarks/night_heads.py [--heads dropout,linear,auto]
        [--seeds 3,4,5,6,7] [--minutes 10] [--workdir DIR]

The snore recipe of `tests/conftest.snore_vgg16`: 7/8 of ../shared/data/snoring prepared
(`earmark prepare --manifest`), the other eighth held out; one model per `--head` (VGG16
with the stand-in weights, frozen, sharing one bottleneck cache); nights of `--minutes`
built from the held-out clips by ../shared/tools/make_night.py, one per seed; each model
labels the folder of nights with `earmark label` and no post-processing flags. Printed per
head and night: event F1 at IoU 0.5 (`model.event_metrics`), precision, recall, the median
onset error of the matched snores (all nights), and the kinds of error: snores split into
several segments, snores no segment touches, and segments that touch no snore; then their
means and totals over the nights, and the snore settings label used. `--workdir`
keeps everything, and a rerun reuses what is there (prepared data, cache, models, nights).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from earmark.model import event_metrics, model_files  # noqa: E402
from earmark.pipelines import label_formats  # noqa: E402
from tests import nights  # noqa: E402  (the night builders the tests use)
from tests.shared import shared_path  # noqa: E402


NIGHTS_FOLDER = "nights"     # in a --workdir: nights/NAME.wav, each beside NAME.truth.csv


def truth_csv(work: str, wav_name: str) -> str:
    """Where a --workdir keeps the truth CSV of nights/`wav_name`."""
    return os.path.join(work, os.path.splitext(wav_name)[0] + ".truth.csv")


def model_dir(work: str, head: str = "dropout") -> str:
    """Where a --workdir keeps the model trained with `--head head`."""
    return os.path.join(work, f"model_{head}")


def workdir_nights(work: str) -> dict:
    """{night WAV path: truth events} of a --workdir, in name order."""
    folder = os.path.join(work, NIGHTS_FOLDER)
    return {os.path.join(folder, n): nights.read_truth(truth_csv(work, n))
            for n in sorted(os.listdir(folder)) if n.endswith(".wav")}


def earmark(*args):
    subprocess.run([sys.executable, "-m", "earmark", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def overlaps(a, b) -> bool:
    return min(a.end_s, b.end_s) > max(a.start_s, b.start_s)


def night_scores(truth, found) -> dict:
    p, r, f1 = event_metrics.f1(*event_metrics.event_f1(truth, found))
    touching = [sum(overlaps(t, s) for s in found) for t in truth]
    pairs = event_metrics.match_iou(truth, found)
    return {"f1": f1, "precision": p, "recall": r,
            "onset_errors_s": [abs(truth[i].start_s - found[j].start_s) for i, j in pairs],
            "split": sum(n > 1 for n in touching), "missed": sum(n == 0 for n in touching),
            "false_alarms": sum(not any(overlaps(t, s) for t in truth) for s in found)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heads", default="dropout,linear,auto")
    p.add_argument("--seeds", default="3,4,5,6,7")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="train with --int8 / --no-int8 (default: train's own, which ships the "
                        "8-bit file for image bases, checked for parity on the calibration "
                        "audio)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="earmark_night_heads_")
    os.makedirs(work, exist_ok=True)
    clips = nights.split_snoring_clips(work)
    prepared = os.path.join(work, "prepared")
    if not os.path.isdir(prepared):
        earmark("prepare", "--manifest", clips["train_csv"], "--output", prepared)
    night_dir, truths = os.path.join(work, NIGHTS_FOLDER), {}
    os.makedirs(night_dir, exist_ok=True)
    for seed in [int(s) for s in args.seeds.split(",")]:
        name = f"night_{seed}.wav"
        truth = truth_csv(work, name)
        if os.path.exists(truth):
            truths[name] = nights.read_truth(truth)
        else:
            truths[name] = nights.make_night(clips["held_out"], os.path.join(night_dir, name),
                                             truth, args.minutes, seed)
    weights = shared_path("models", "vgg16_hed_notop.weights.h5")
    results = {}
    for head in args.heads.split(","):
        model, out = model_dir(work, head), os.path.join(work, f"labels_{head}")
        if not os.path.exists(os.path.join(model, "model.json")):
            earmark("train", "--data", prepared, "--model-dir", model, "--base", "vgg16",
                    "--weights", weights, "--cache-dir", os.path.join(work, "cache"),
                    "--head", head, "--quiet",
                    *([] if args.int8 is None else ["--int8" if args.int8 else "--no-int8"]))
        if not os.path.exists(os.path.join(out, "segments.csv")):
            earmark("label", "--model", model, "--input", night_dir, "--output", out)
        with open(os.path.join(out, "segments.csv"), "rb") as f:
            segments = label_formats.read_segments_csv(f.read().decode())
        meta = model_files.read_local_meta(model)
        results[head] = (meta, {n: night_scores(t, [s for s in segments if s.file == n])
                                for n, t in sorted(truths.items())})
    print(f"snore nights of {args.minutes:g} min from held-out clips, seeds {args.seeds}; "
          f"event F1 at IoU 0.5 at the defaults ({work})")
    print("per night: event F1 (precision/recall) [snores split / missed / segments touching no "
          "snore]")
    print(f"{'head':<9}{'kept':<8}{'calib F1':>9}  {'mean F1':>7}  {'onset err':>9}  nights")
    for head, (meta, per_night) in results.items():
        calibration = meta["calibration"]["per_label"]["snore"]["event_f1_iou_0.5"]
        cells = "  ".join(f"{s['f1']:.3f} ({s['precision']:.2f}/{s['recall']:.2f}) "
                          f"[{s['split']}/{s['missed']}/{s['false_alarms']}]"
                          for s in per_night.values())
        mean = np.mean([s["f1"] for s in per_night.values()])
        onset = np.median([e for s in per_night.values() for e in s["onset_errors_s"]])
        print(f"{head:<9}{meta['head']['kind']:<8}{calibration:>9.3f}  {mean:>7.3f}  "
              f"{onset:>7.3f} s  {cells}")
    print("over the nights: event F1 mean / min, precision and recall mean; snores split, "
          "missed, segments touching no snore: totals; the snore settings label used")
    for head, (meta, per_night) in results.items():
        scores = per_night.values()
        f1s = [s["f1"] for s in scores]
        precision, recall = (np.mean([s[k] for s in scores]) for k in ("precision", "recall"))
        totals = " / ".join(str(sum(s[k] for s in scores))
                            for k in ("split", "missed", "false_alarms"))
        used = ", ".join(f"{k} {v:g}" for k, v in meta["post_processing"]["snore"].items())
        print(f"{head:<9}F1 {np.mean(f1s):.3f} / {min(f1s):.3f}  P {precision:.3f}  "
              f"R {recall:.3f}  [{totals}]  {used}")


if __name__ == "__main__":
    main()
