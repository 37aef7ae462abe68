"""Time to a trained model at the defaults, on an hour of annotated recordings, and what it
detects on a night it never saw.

    .venv/bin/python benchmarks/time_to_model.py [--nights 3] [--minutes 20]
        [--prepare-args "--split-by recording"] [--train-args "--strategy finetune"]
        [--workdir DIR]

Three 20-minute nights built by ../shared/tools/make_night.py from 7/8 of the shared snoring
clips, annotated by its truth written as Raven tables; `earmark prepare --input nights/
--annotations tables/` and `earmark train` with every flag at its default but the base, the offline
VGG16 stand-in (`--base vgg16 --weights` its file), and a fresh bottleneck cache (so the pass
over the base is timed);
a held-out 20-minute night from the other eighth, labeled with no post-processing flag and
scored by `model.event_metrics` (event F1 at IoU 0.5). Prints the wall time of each command
(whole processes, as a user waits for them), the strategy train chose and its phases, and
what calibration chose its settings on (the split prepare made, `--split-by`) with the event
F1 it expected there, beside the held-out night's.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from earmark.model import event_metrics  # noqa: E402
from tests import nights  # noqa: E402  (the night builders the tests use)
from tests.shared import shared_path  # noqa: E402


def earmark(*argv) -> float:
    """Run `earmark ARGV` as a user would; → wall seconds."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "earmark", *argv], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nights", type=int, default=3)
    p.add_argument("--minutes", type=float, default=20)
    p.add_argument("--prepare-args", default="", help="extra `earmark prepare` flags")
    p.add_argument("--train-args", default="", help="extra `earmark train` flags")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="earmark_ttm_")
    split = nights.split_snoring_clips(work)
    train_clips = nights.clip_folder(split["train_csv"], os.path.join(work, "train_clips"))
    rec, tables, held = (os.path.join(work, d) for d in ("nights", "tables", "held_out_night"))
    for d in (rec, tables, held):
        os.makedirs(d, exist_ok=True)
    for i in range(args.nights):
        night = os.path.join(rec, f"night{i + 1}.wav")
        if not os.path.exists(night):
            truth = nights.make_night(train_clips, night, os.path.join(work, f"truth{i + 1}.csv"),
                                      args.minutes, 100 + i)
            nights.write_raven_table(truth, os.path.join(tables, f"night{i + 1}.Table.1.selections.txt"))
    held_truth = nights.make_night(split["held_out"], os.path.join(held, "held.wav"),
                                   os.path.join(work, "held_truth.csv"), args.minutes, 7)
    prepared, model, cache, labels = (os.path.join(work, d) for d in
                                      ("prepared", "model", "cache", "labels"))
    for d in (prepared, model, cache, labels):
        subprocess.run(["rm", "-rf", d], check=True)
    prepare_s = earmark("prepare", "--input", rec, "--annotations", tables, "--output", prepared,
                        *shlex.split(args.prepare_args))
    train_s = earmark("train", "--data", prepared, "--model-dir", model, "--cache-dir", cache,
                      "--base", "vgg16", "--weights",
                      shared_path("models", "vgg16_hed_notop.weights.h5"), "--quiet",
                      *shlex.split(args.train_args))
    label_s = earmark("label", "--model", model, "--input", held, "--output", labels)
    found = nights.read_segments(os.path.join(labels, "segments.csv"))
    tp, n_truth, n_found = event_metrics.event_f1(held_truth, found)
    precision, recall, f1 = event_metrics.f1(tp, n_truth, n_found)
    with open(os.path.join(model, "model.json")) as f:
        meta = json.load(f)
    with open(os.path.join(prepared, "stats.json")) as f:
        stats = json.load(f)
    train_windows = sum(v["patches"] for v in stats["splits"]["train"].values())
    print(f"| audio | train windows | prepare s | train s | prepare + train min | strategy "
          f"| held-out event F1 (P / R) | label s |\n|---|---|---|---|---|---|---|---|\n"
          f"| {args.nights} × {args.minutes:g} min | {train_windows} | {prepare_s:.0f} | "
          f"{train_s:.0f} | {(prepare_s + train_s) / 60:.1f} | {meta['strategy']['used']}: "
          f"{'; '.join(meta['strategy']['phases'])} | {f1:.3f} ({precision:.3f} / "
          f"{recall:.3f}) | {label_s:.0f} |")
    print(f"train timings: {meta['training']['timings_s']}, wall {meta['training']['wall_s']} s")
    with open(os.path.join(prepared, "features.json")) as f:
        split_by = json.load(f).get("split_by")
    calibration = meta.get("calibration", {})
    expected = {l: v.get("event_f1_iou_0.5") for l, v in calibration.get("per_label", {}).items()}
    print(f"split by {split_by}; calibrated on {calibration.get('source')} "
          f"(split {calibration.get('split')}): expected event F1 {expected}, held-out {f1:.3f}; "
          f"post-processing {meta.get('post_processing', {}).get('snore')}")


if __name__ == "__main__":
    main()
