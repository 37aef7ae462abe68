"""The review loop closed by a simulated reviewer: does verifying a model's own detections,
round after round, make it better, and does choosing the uncertain ones beat chance?

    .venv/bin/python benchmarks/review_loop.py [--rounds 5] [--budget 20]
        [--strategies mixed,uncertain,random,top] [--pool-nights 3] [--test-nights 3]
        [--minutes 10] [--seed 0] [--no-int8] [--workdir DIR]

The shared snoring clips (../shared/data/snoring, snore / not_snore) are split three ways,
by their row in labels.csv: every 8th clip (`tests/nights.split_snoring_clips`) builds the
TEST nights; rows 1-3 of every 8 build the POOL nights (the recordings the reviewer
verifies detections in); the other half are candidates for the 5 starting example clips
per label (drawn with `--seed`). Nights are `--minutes` long, built by
../shared/tools/make_night.py (60 snores each, with truth CSVs), pool and test from
disjoint clips.

Round 0: `earmark prepare --manifest` the 10 example clips (its split column makes 4 train
and 1 validation clip per label, so calibration sees a snore; `--split-column` needs a test
row, so one more clip per label is the test split, which train never reads), `earmark
train` at its defaults but the base (VGG16 with the stand-in weights, `--base vgg16
--weights ../shared/models/vgg16_hed_notop.weights.h5`, as the other benchmarks; the
reference is trained on the same flags and the same cache). Then per strategy
of `--strategies`, each its own chain from the same round-0 model, rounds r = 1..`--rounds`:
`earmark label --scores` the pool with the previous model; `earmark review --run LABELS
--budget N --strategy S --seed SEED*100+r --output R_r`; the simulated reviewer answers
every item of R_r/review.csv from the pool truth and writes R_r/verdicts.csv; `earmark
prepare --input POOL --annotations R_r/verdicts.csv --annotated-extent selections --output
P_r`; `earmark train --data CLIPS --data P_1 ... --data P_r` (same flags as round 0).
Every model (round 0 and each round's) labels the test nights with no post-processing
flag, scored by `model.event_metrics` (event F1 at IoU 0.5, one-to-one matching, as
benchmarks/night_heads.py). The reference: a model trained the same way on every clip not
used for the test nights (`nights.split_snoring_clips`' train.csv, 7/8 of the 800 clips).

The reviewer's rule: an item is `yes` when its span overlaps one true snore of its pool
night by at least 50 % of the shorter of the two (the item or the snore), else `no`.
Each round's review leaves out what the chain's earlier rounds asked (`review --exclude`
their review folders); an item still counts as a repeat when an earlier round's item of the
same recording and label overlaps it by at least 50 % of the shorter (answered again and
counted).

Prints one row per strategy and round: items verified so far (all, distinct), how many
were `yes`, and the test nights' mean event F1 with mean precision and recall; then the
round-0 and reference rows, the repeats per strategy, the wall time of each step, and the
issue's targets (after the last round: mean test F1 >= the reference's; uncertain >=
random + 0.03). `--workdir` keeps everything, and a rerun reuses what is there (nights,
prepared folders, the bottleneck cache, models, label runs, reviews).
"""
import argparse
import csv
import json
import os
import random
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
from tests import nights  # noqa: E402  (the night builders the tests use)
from tests.shared import shared_path  # noqa: E402

EXAMPLES_PER_LABEL = 5
POOL_ROWS = (1, 2, 3)        # rows i % 8 in these build the pool nights (0 is the test nights')
YES_OVERLAP = 0.5            # of the shorter span: the reviewer's yes rule, and a repeat's
# the example manifest's split column: 4 train and 1 validation clip per label (calibration
# needs a snore among the validation clips: 80/10/10 by hash put none there), and, as
# --split-column needs a test row, 1 more clip per label that train never reads
EXAMPLE_SPLIT_FLAGS = ("--split-column", "split", "--test-values", "test",
                       "--validation-values", "validation")
TIMES = {}                   # step kind -> [wall seconds of each run this time]


def earmark(kind, *args):
    """Run `earmark ARGS` as a user would (output hidden unless it fails); time it."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "earmark", *args], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode:
        sys.exit(f"earmark {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}")
    TIMES.setdefault(kind, []).append(time.monotonic() - t0)


def done(path, marker) -> bool:
    """Whether an earlier run finished `path` (its `marker` file exists); a folder left
    half-written by a killed run is removed, so the step runs again on an empty one."""
    if os.path.exists(os.path.join(path, marker)):
        return True
    shutil.rmtree(path, ignore_errors=True)
    return False


def overlap_of_shorter(a, b) -> float:
    inter = min(a.end_s, b.end_s) - max(a.start_s, b.start_s)
    shorter = min(a.end_s - a.start_s, b.end_s - b.start_s)
    return max(inter, 0.0) / shorter if shorter > 0 else 0.0


def verdict(item: Event, truth) -> str:
    """The simulated reviewer: yes when the item overlaps a true event of its label by at
    least YES_OVERLAP of the shorter span, else no."""
    hit = any(t.label == item.label and overlap_of_shorter(item, t) >= YES_OVERLAP
              for t in truth)
    return "yes" if hit else "no"


# -- data ------------------------------------------------------------------------------

def split_clips(work, seed) -> dict:
    """Test clips (every 8th), pool clips (POOL_ROWS of every 8) and the example clips (5 per
    label from the rest): manifests and make_night folders under `work`."""
    split = nights.split_snoring_clips(work)   # train.csv (7/8), held_out/ (every 8th)
    snoring = shared_path("data", "snoring")
    with open(os.path.join(snoring, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    pool_dir = os.path.join(work, "pool_clips")
    os.makedirs(pool_dir, exist_ok=True)
    with open(os.path.join(pool_dir, "labels.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([os.path.join(snoring, r["path"]), r["label"]]
                     for i, r in enumerate(rows) if i % nights.HELD_OUT_EVERY in POOL_ROWS)
    rest = [r for i, r in enumerate(rows)
            if i % nights.HELD_OUT_EVERY and i % nights.HELD_OUT_EVERY not in POOL_ROWS]
    rng = random.Random(seed)
    examples = []   # (row, split): per label 4 train + 1 validation, and 1 test never read
    for label in sorted({r["label"] for r in rest}):
        drawn = rng.sample([r for r in rest if r["label"] == label], EXAMPLES_PER_LABEL + 1)
        examples += [(r, "train") for r in drawn[:EXAMPLES_PER_LABEL - 1]]
        examples += [(drawn[-2], "validation"), (drawn[-1], "test")]
    examples_csv = os.path.join(work, "examples.csv")
    with open(examples_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "split"])
        w.writerows([os.path.join(snoring, r["path"]), r["label"], r["path"], split]
                     for r, split in examples)
    return {"examples_csv": examples_csv, "reference_csv": split["train_csv"],
            "test_clips": split["held_out"], "pool_clips": pool_dir}


def build_nights(clips_dir, folder, truth_dir, count, minutes, first_seed) -> dict:
    """`count` nights in `folder` (kept when there), their truth CSVs in `truth_dir`;
    → {night file name: truth events}."""
    os.makedirs(folder, exist_ok=True)
    os.makedirs(truth_dir, exist_ok=True)
    truths = {}
    for i in range(count):
        name = f"night_{first_seed + i}.wav"
        wav = os.path.join(folder, name)
        truth = os.path.join(truth_dir, name.replace(".wav", ".csv"))
        if os.path.exists(truth) and os.path.exists(wav):
            truths[name] = nights.read_truth(truth)
        else:
            truths[name] = nights.make_night(clips_dir, wav, truth, minutes, first_seed + i)
    return truths


# -- steps -----------------------------------------------------------------------------

class Loop:
    def __init__(self, args, work):
        self.args, self.work = args, work
        self.weights = shared_path("models", "vgg16_hed_notop.weights.h5")
        self.cache = os.path.join(work, "cache")

    def prepare_clips(self, manifest, out, *flags):
        if not done(out, "stats.json"):
            earmark("prepare clips", "prepare", "--manifest", manifest, "--output", out, *flags)
        return out

    def train(self, data, model):
        if not done(model, "model.json"):
            flags = [x for d in data for x in ("--data", d)]
            earmark("train", "train", *flags, "--model-dir", model, "--base", "vgg16",
                    "--weights", self.weights, "--cache-dir", self.cache, "--quiet",
                    *(["--no-int8"] if self.args.no_int8 else []))
        return model

    def label(self, model, folder, out, scores=False, kind="label test"):
        if not done(out, "segments.csv"):
            earmark(kind, "label", "--model", model, "--input", folder, "--output", out,
                    *(["--scores"] if scores else []))
        return out

    def review(self, run, strategy, seed, out, earlier=()):
        if not done(out, "review.csv"):
            earmark("review", "review", "--run", run, "--budget", str(self.args.budget),
                    "--strategy", strategy, "--seed", str(seed), "--output", out,
                    *[a for e in earlier for a in ("--exclude", e)])
        with open(os.path.join(out, "review.csv")) as f:
            return list(csv.DictReader(f))

    def prepare_verdicts(self, pool, verdicts_csv, out):
        if not done(out, "stats.json"):
            earmark("prepare verdicts", "prepare", "--input", pool, "--annotations",
                    verdicts_csv, "--annotated-extent", "selections", "--output", out)
        return out


def answer(rows, pool_truths, out_csv) -> list:
    """Fill each review.csv row's verdict from the pool truth; write verdicts.csv (review's
    columns and formatting, as review.html saves it) → the rows."""
    for r in rows:
        name = os.path.basename(r["file"])
        item = Event(float(r["start_s"]), float(r["end_s"]), r["label"])
        r["verdict"] = verdict(item, pool_truths[name])
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else
                           ["file", "start_s", "end_s", "label", "confidence", "strategy",
                            "verdict"])
        w.writeheader()
        w.writerows(rows)
    return rows


def is_repeat(row, earlier) -> bool:
    item = Event(float(row["start_s"]), float(row["end_s"]), row["label"])
    return any(e["file"] == row["file"] and e["label"] == row["label"]
               and overlap_of_shorter(item, Event(float(e["start_s"]), float(e["end_s"]),
                                                  e["label"])) >= YES_OVERLAP
               for e in earlier)


def test_scores(labels_dir, test_truths) -> dict:
    """Mean event F1, precision, recall over the test nights (IoU 0.5), and per night F1."""
    with open(os.path.join(labels_dir, "segments.csv"), "rb") as f:
        segments = label_formats.read_segments_csv(f.read().decode())
    files = {}
    for s in segments:
        files.setdefault(os.path.basename(s.file), []).append(Event(s.start_s, s.end_s, s.label))
    per = {}
    for name, truth in sorted(test_truths.items()):
        segs = [s for s in files.get(name, []) if s.label == "snore"]
        per[name] = event_metrics.f1(*event_metrics.event_f1(truth, segs))
    p, r, f = (float(np.mean([v[i] for v in per.values()])) for i in range(3))
    return {"f1": f, "precision": p, "recall": r, "per_night_f1": [v[2] for v in per.values()]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--budget", type=int, default=20, help="items per review round")
    p.add_argument("--strategies", default="mixed,uncertain,random,top",
                   help="review strategies, each its own chain (mixed: review's default)")
    p.add_argument("--pool-nights", type=int, default=3)
    p.add_argument("--test-nights", type=int, default=3)
    p.add_argument("--minutes", type=float, default=10.0, help="length of each night")
    p.add_argument("--seed", type=int, default=0,
                   help="draws the example clips and seeds review's random strategy")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference model (all non-test clips)")
    p.add_argument("--no-int8", action="store_true",
                   help="train every model with --no-int8, so every label run is in "
                        "TensorFlow (earmark's default before 2026-12-06)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    t_start = time.monotonic()
    work = args.workdir or tempfile.mkdtemp(prefix="earmark_review_loop_")
    os.makedirs(work, exist_ok=True)
    strategies = args.strategies.split(",")
    clips = split_clips(work, args.seed)
    pool = os.path.join(work, "pool")
    test = os.path.join(work, "test")
    pool_truths = build_nights(clips["pool_clips"], pool, os.path.join(work, "pool_truth"),
                               args.pool_nights, args.minutes, 200)
    test_truths = build_nights(clips["test_clips"], test, os.path.join(work, "test_truth"),
                               args.test_nights, args.minutes, 300)
    loop = Loop(args, work)
    examples = loop.prepare_clips(clips["examples_csv"], os.path.join(work, "examples_prepared"),
                                  *EXAMPLE_SPLIT_FLAGS)

    r0 = os.path.join(work, "round_0")
    model0 = loop.train([examples], os.path.join(r0, "model"))
    results = {"round 0": test_scores(loop.label(model0, test, os.path.join(r0, "labels_test")),
                                      test_truths)}
    print(f"round 0 (10 example clips): test mean event F1 {results['round 0']['f1']:.3f}",
          flush=True)
    rows_out, repeats = [], {}
    for strategy in strategies:
        prev_model, prev_pool_labels, data, reviewed = model0, None, [examples], []
        repeats[strategy] = 0
        rows_out.append((strategy, 0, 0, 0, 0, results["round 0"]))
        for r in range(1, args.rounds + 1):
            rd = os.path.join(work, strategy, f"round_{r}")
            os.makedirs(rd, exist_ok=True)
            if r == 1:   # every chain starts from the same round-0 model and its pool run
                pool_labels = loop.label(model0, pool, os.path.join(r0, "labels_pool"),
                                         scores=True, kind="label pool")
            else:
                pool_labels = loop.label(prev_model, pool, os.path.join(
                    work, strategy, f"round_{r - 1}", "labels_pool"), scores=True,
                    kind="label pool")
            review_dir = os.path.join(rd, "review")
            rows = loop.review(pool_labels, strategy, args.seed * 100 + r, review_dir,
                               [os.path.join(work, strategy, f"round_{k}", "review")
                                for k in range(1, r)])
            repeats[strategy] += sum(is_repeat(x, reviewed) for x in rows)
            verdicts_csv = os.path.join(review_dir, "verdicts.csv")
            rows = answer(rows, pool_truths, verdicts_csv)
            reviewed += rows
            data = data + [loop.prepare_verdicts(pool, verdicts_csv, os.path.join(rd, "prepared"))]
            model = loop.train(data, os.path.join(rd, "model"))
            scores = test_scores(loop.label(model, test, os.path.join(rd, "labels_test")),
                                 test_truths)
            distinct = len(reviewed) - repeats[strategy]
            yes = sum(x["verdict"] == "yes" for x in reviewed)
            rows_out.append((strategy, r, len(reviewed), distinct, yes, scores))
            print(f"{strategy} round {r}: {len(reviewed)} items verified ({yes} yes), test "
                  f"mean event F1 {scores['f1']:.3f} ({time.monotonic() - t_start:.0f} s)",
                  flush=True)
            prev_model = model
    if not args.no_reference:
        ref = os.path.join(work, "reference")
        ref_prepared = loop.prepare_clips(clips["reference_csv"], os.path.join(ref, "prepared"))
        ref_model = loop.train([ref_prepared], os.path.join(ref, "model"))
        results["reference"] = test_scores(loop.label(ref_model, test, os.path.join(
            ref, "labels_test")), test_truths)
    wall = time.monotonic() - t_start

    n_test = sum(len(t) for t in test_truths.values())
    n_pool = sum(len(t) for t in pool_truths.values())
    print()
    print(f"review loop: {args.pool_nights} pool and {args.test_nights} test nights of "
          f"{args.minutes:g} min ({n_pool} / {n_test} snores), budget {args.budget} a round, "
          f"{args.rounds} rounds, seed {args.seed} ({work})")
    print(f"reviewer: yes when the item overlaps a true snore by >= {YES_OVERLAP:.0%} of the "
          "shorter span, else no; test: event F1 at IoU 0.5, mean over the test nights")
    print(f"| strategy | round | items verified (distinct) | yes | test mean event F1 | "
          f"precision | recall | F1 per test night |")
    print("|---|---|---|---|---|---|---|---|")
    for strategy, r, n, distinct, yes, s in rows_out:
        print(f"| {strategy} | {r} | {n} ({distinct}) | {yes} | {s['f1']:.3f} | "
              f"{s['precision']:.3f} | {s['recall']:.3f} | "
              f"{' / '.join(f'{x:.3f}' for x in s['per_night_f1'])} |")
    if "reference" in results:
        s = results["reference"]
        print(f"| reference (all {sum(1 for _ in open(clips['reference_csv'])) - 1} non-test "
              f"clips) | – | – | – | {s['f1']:.3f} | {s['precision']:.3f} | "
              f"{s['recall']:.3f} | {' / '.join(f'{x:.3f}' for x in s['per_night_f1'])} |")
    print("repeats (items overlapping an earlier round's item by >= 50 % of the shorter, "
          "earlier rounds excluded): " + ", ".join(f"{k} {v}" for k, v in repeats.items()))
    print("wall s per step (runs this time): " + ", ".join(
        f"{k} {np.mean(v):.0f} (x{len(v)})" for k, v in TIMES.items()) +
        f"; whole run {wall:.0f} s ({wall / 60:.1f} min)")
    last = {strategy: s for strategy, r, n, d, y, s in rows_out if r == args.rounds}
    if "reference" in results and last:
        ref_f1 = results["reference"]["f1"]
        for strategy, s in last.items():
            print(f"target: after {args.rounds} rounds {strategy} F1 {s['f1']:.3f} >= reference "
                  f"{ref_f1:.3f}: {'met' if s['f1'] >= ref_f1 else 'NOT met'}")
    if "uncertain" in last and "random" in last:
        u, rnd = last["uncertain"]["f1"], last["random"]["f1"]
        print(f"target: uncertain {u:.3f} >= random {rnd:.3f} + 0.03: "
              f"{'met' if u >= rnd + 0.03 else 'NOT met'}")
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump({"args": vars(args), "rows": [
            {"strategy": st, "round": r, "items": n, "distinct": d, "yes": y, **s}
            for st, r, n, d, y, s in rows_out], "reference": results.get("reference"),
            "repeats": repeats, "times_s": TIMES, "wall_s": wall}, f, indent=1)


if __name__ == "__main__":
    main()
