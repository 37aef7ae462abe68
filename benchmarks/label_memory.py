"""`earmark label`'s peak memory per base: the scoring path's cost per window (measured, then
fitted), and whole `label` runs at the old default batch and at the batch a budget picks.

    .venv/bin/python benchmarks/label_memory.py [--workdir /tmp/earmark-label-memory]
        [--part scoring,label] [--bases inception_v3,vgg16,musicnn_msd,birdnet]
        [--batches 2,8,16,32,64,128] [--repeats 2] [--precision float32]
        [--label-bases inception_v3,musicnn_msd,birdnet] [--hours 3] [--short-files 1000,3000]
        [--budget 1.5GB] [--batch-size N]

Models: `earmark prepare` of 40 shared snore clips (log-mel, and the waveform windows of each
embedding base), then `earmark train --epochs 1` per base: image bases with `--weights none`
(VGG16 with the stand-in weights ../shared/models/vgg16_hed_notop.weights.h5; weights do not
change memory), embedding bases with the installed wheels' weights. Built once under
`--workdir` (outside the repository) and reused.

Part 1, scoring (`--part scoring`): for each base and each of `--batches`, a fresh process
imports what `label`'s worker imports, loads the model as `label` does
(`serving.predictor(dir, precision)`), then scores a batch three times the way label's
RunInference step does (a list of windows → `np.stack` → `Predictor.predict`); its peak
RSS is /proc/self/status VmHWM, `--repeats` runs per batch (the largest kept). The bytes per
window (the window and the activations the base keeps for it) are the least-squares slope
over the batch sizes up to 64; the fixed bytes (Python, TensorFlow, Beam, the model) the intercept of
the line with that slope above every run: peaks vary from run to run, and the budget needs
the upper line. The process before loading the model gives the runtime's share of them. It prints the table and the `MEASURED` entries of
`model/memory_budget.py`.

Part 2, label (`--part label`): whole `earmark label` processes (DirectRunner, default flags
apart from `--batch-size`), peak RSS of the child (`RUSAGE_CHILDREN` ru_maxrss), on (a) one
recording of `--hours` made with ../shared/tools/make_night.py and (b) each of
`--short-files` counts of 1-s shared snore clips (copied under the work folder, cycling
through the 800), at batch 128 (the old default), at the batch `memory_budget.label_batch_size`
picks for `--budget` and, when given, at `--batch-size`.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EARMARK_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
sys.path.insert(0, ROOT)
EARMARK = [sys.executable, "-m", "earmark"]
OLD_DEFAULT_BATCH = 128
CLIPS_PER_LABEL = 20
# the prepared windows each base trains on
PREPARED = {"image": ("log_mel", []), "musicnn_msd": ("wave16k", ["--base", "musicnn_msd"]),
            "musicnn_mtt": ("wave16k", ["--base", "musicnn_msd"]),
            "birdnet": ("wave48k", ["--base", "birdnet"]),
            "birdnet+musicnn_msd": ("wave48k", ["--base", "birdnet"])}


def shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        sys.exit(f"{path} not found: this benchmark needs ../shared (set EARMARK_SHARED)")
    return path


def run(cmd, **kw):
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


# ---------------------------------------------------------------- models

def snore_manifest(work) -> str:
    """20 snore + 20 not_snore shared clips, grouped by path (the same split anywhere)."""
    path = os.path.join(work, "snore40.csv")
    if not os.path.exists(path):
        snoring = shared("data", "snoring")
        with open(os.path.join(snoring, "labels.csv")) as f:
            rows = list(csv.DictReader(f))
        picked = [r for label in ("snore", "not_snore")
                  for r in [r for r in rows if r["label"] == label][:CLIPS_PER_LABEL]]
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "group"])
            w.writerows([os.path.join(snoring, r["path"]), r["label"], r["path"]] for r in picked)
    return path


def model_dir(work, base: str, input_px: int = 0) -> str:
    """A model of `base` trained one epoch on 40 snore clips (built once under `work`)."""
    from earmark.model import base_registry
    name = base_registry.canonical(base)
    out = os.path.join(work, "models", name + (f"_{input_px}px" if input_px else ""))
    if os.path.exists(os.path.join(out, "model.json")):
        return out
    image = not base_registry.trains_on_waveform(name)
    folder, prepare_flags = PREPARED["image" if image else name]
    prepared = os.path.join(work, "prepared", folder)
    if not os.path.exists(os.path.join(prepared, "stats.json")):
        run(EARMARK + ["prepare", "--manifest", snore_manifest(work), "--output", prepared,
                       "--split", "60/20/20", *prepare_flags])
    cmd = EARMARK + ["train", "--data", prepared, "--model-dir", out, "--base", name,
                     "--epochs", "1", "--quiet", "--cache-dir", os.path.join(work, "cache")]
    if image:
        weights = (shared("models", "vgg16_hed_notop.weights.h5") if name == "vgg16" else "none")
        cmd += ["--weights", weights, "--strategy", "frozen"]
        if input_px:
            cmd += ["--input-size", str(input_px)]
    t = time.time()
    run(cmd)
    print(f"  trained {name}{f' at {input_px} px' if input_px else ''} in {time.time() - t:.0f} s",
          flush=True)
    return out


# ---------------------------------------------------------------- part 1: scoring path

def vm_hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def probe(model, batch: int, precision: str, calls: int = 3) -> dict:
    """In this (fresh) process: the scoring path's peak at `batch` windows per call."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import apache_beam  # noqa: F401  label's worker has Beam loaded too
    import tensorflow  # noqa: F401
    from earmark.model import serving
    runtime = vm_hwm_bytes()
    predictor = serving.predictor(model, precision)
    loaded = vm_hwm_bytes()
    rng = np.random.default_rng(0)
    for _ in range(calls):  # RunInference: a list of windows, stacked, scored
        windows = [(0.1 * rng.standard_normal(predictor.window_samples)).astype(np.float32)
                   for _ in range(batch)]
        scores = predictor.predict(np.stack(windows))
        assert scores.shape[0] == batch
        del windows, scores
    return {"runtime": runtime, "loaded": loaded, "peak": vm_hwm_bytes(),
            "window_samples": predictor.window_samples}


def probe_in_subprocess(model, batch, precision) -> dict:
    out = run([sys.executable, "-W", "ignore", os.path.abspath(__file__), "--probe", model, "--probe-batch",
               str(batch), "--precision", precision])
    return json.loads(out.strip().splitlines()[-1])


def fit(batches, peaks, fit_max_batch=64):
    """peak ≈ fixed + batch · per_window: the least-squares slope over the batches up to
    `fit_max_batch` (where a budget of a few GB picks), and the intercept raised until the
    line bounds every measured peak from above, the larger batches' included → (fixed,
    per_window, least-squares intercept). TensorFlow runs a graph's independent ops side by
    side, so how many temporaries coexist varies from run to run (musicnn at batch 128: 3.1
    to 5.3 GB): the budget needs the upper line, not the middle one."""
    b, p = np.asarray(batches, float), np.asarray(peaks, float)
    near = b <= fit_max_batch if (b <= fit_max_batch).sum() >= 2 else np.ones_like(b, bool)
    per_window, intercept = np.polyfit(b[near], p[near], 1)
    return float((p - per_window * b).max()), float(per_window), float(intercept)


def scoring_part(work, bases, batches, precision, repeats):
    from earmark.model import base_registry
    rows, entries = [], {}
    for base in bases:
        name, px = (base.split("@") + [""])[:2]   # inception_v3@160: another input size
        model = model_dir(work, name, int(px or 0))
        meta = json.load(open(os.path.join(model, "model.json")))
        image = not base_registry.trains_on_waveform(name)
        prec = precision if image else "float32"  # audio bases always run float32
        found = {b: [probe_in_subprocess(model, b, prec) for _ in range(repeats)] for b in batches}
        peaks = [max(f["peak"] for f in found[b]) for b in batches]
        for b in batches:
            print(f"  {base} {prec} batch {b}: peak "
                  + " / ".join(f"{f['peak'] / 1e6:.0f}" for f in found[b]) + " MB", flush=True)
        fixed, slope, intercept = fit(batches, peaks)
        window_bytes = 4 * found[batches[0]][0]["window_samples"]
        runtime = max(f["runtime"] for fs in found.values() for f in fs)
        rows.append((base, prec, window_bytes, runtime, fixed, intercept, slope,
                     [" / ".join(f"{f['peak'] / 1e6:.0f}" for f in found[b]) for b in batches]))
        key = base_registry.canonical(name)
        entries[key + (f"@{px}" if px else "")] = (
            f"Measured({int(round(fixed - runtime))}, {int(round(slope - window_bytes))}"
            + (f", input_px={meta['base']['input_px']})" if image else ")"))
    print(f"\nScoring path peak RSS (VmHWM, MB; {repeats} runs each), {os.cpu_count()} cores; "
          f"per window: least-squares slope over batches {','.join(str(b) for b in batches if b <= 64)}; "
          "fixed: the intercept of the line above every run (least squares in brackets)")
    print("| base | precision | window | runtime | fixed | per window | "
          + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(batches))
    for base, prec, wb, runtime, fixed, intercept, slope, peaks in rows:
        print(f"| {base} | {prec} | {wb / 1e3:.0f} kB | {runtime / 1e6:.0f} MB | {fixed / 1e6:.0f} MB "
              f"({intercept / 1e6:.0f}) | {slope / 1e6:.2f} MB | " + " | ".join(peaks) + " |")
    print(f"\nmodel/memory_budget.py: RUNTIME_BYTES = {max(r[3] for r in rows)}; MEASURED entries:")
    for key, e in entries.items():
        print(f"    {key!r}: {e},")
    return rows


# ---------------------------------------------------------------- part 2: whole label runs

def long_recording(work, hours) -> str:
    folder = os.path.join(work, f"long_{hours:g}h")
    path = os.path.join(folder, "night.wav")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        minutes = hours * 60
        t = time.time()
        run([sys.executable, shared("tools", "make_night.py"), shared("data", "snoring"),
             path + ".part.wav", "--truth", os.path.join(work, f"long_{hours:g}h.truth.csv"),
             "--minutes", f"{minutes:g}", "--events", str(int(2 * minutes)),
             "--distractors", str(int(4 * minutes)), "--seed", "1"])
        os.replace(path + ".part.wav", path)
        print(f"  made a {hours:g}-hour recording in {time.time() - t:.0f} s", flush=True)
    return folder


def short_files(work, count) -> str:
    """`count` 1-s shared snore clips (cycling through the 800), 100 per folder."""
    folder = os.path.join(work, f"short_{count}")
    if not os.path.exists(os.path.join(folder, ".done")):
        snoring = shared("data", "snoring")
        with open(os.path.join(snoring, "labels.csv")) as f:
            clips = [r["path"] for r in csv.DictReader(f)]
        for i in range(count):
            sub = os.path.join(folder, f"{i // 100:03d}")
            os.makedirs(sub, exist_ok=True)
            src = clips[i % len(clips)]
            shutil.copyfile(os.path.join(snoring, src),
                            os.path.join(sub, f"{i:05d}_{os.path.basename(src)}"))
        open(os.path.join(folder, ".done"), "w").close()
    return folder


def label_peak(model, folder, out, batch):
    """One `earmark label` process → (wall s, peak RSS bytes, run.json)."""
    if os.path.exists(out):
        shutil.rmtree(out)
    wrapper = ("import resource, subprocess, sys, time; t = time.time(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr[-3000:]) if r.returncode else None; "
               "print(r.returncode, time.time() - t, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, "-c", wrapper, *EARMARK, "label", "--model", model, "--input",
           folder, "--output", out, "--batch-size", str(batch)]
    rc, wall, rss_kb = run(cmd).split()
    if rc != "0":
        sys.exit(f"earmark label failed ({rc}) on {folder}")
    with open(os.path.join(out, "run.json")) as f:
        return float(wall), int(rss_kb) * 1024, json.load(f)


def label_part(work, bases, hours, short_counts, budget, extra_batch):
    from earmark.model import memory_budget
    from earmark.model.model_files import read_local_meta
    cases = [(f"one {hours:g}-hour file", long_recording(work, hours))] if hours else []
    cases += [(f"{n} short files", short_files(work, n)) for n in short_counts]
    rows = []
    for base in bases:
        model = model_dir(work, base)
        meta = read_local_meta(model)
        chosen = memory_budget.label_batch_size(meta, budget)
        inner = memory_budget.inner_batch_size(meta, budget)   # BirdNET's own batch
        expected = memory_budget.expected_peak_bytes(meta, chosen, inner)
        batches = sorted({OLD_DEFAULT_BATCH, chosen} | ({extra_batch} if extra_batch else set()),
                         reverse=True)
        for case, folder in cases:
            for b in batches:
                wall, peak, info = label_peak(model, folder, os.path.join(work, "out"), b)
                windows = int(round(info["audio_hours"] * 3600 / info["hop_s"])) \
                    if "audio_hours" in info else None
                rows.append((base, case, b, b == chosen, peak, wall, expected if b == chosen else None))
                print(f"  {base}, {case}, batch {b}{' (chosen)' if b == chosen else ''}: "
                      f"peak {peak / 1e9:.2f} GB, {wall:.0f} s"
                      + (f", ~{windows} windows" if windows else ""), flush=True)
    print(f"\n`earmark label` peak RSS (ru_maxrss of the process), budget {budget / 1e9:g} GB, "
          f"{os.cpu_count()} cores")
    print("| base | corpus | batch | peak RSS | predicted | wall |")
    print("|---|---|---|---|---|---|")
    for base, case, b, is_chosen, peak, wall, expected in rows:
        print(f"| {base} | {case} | {b}{' (budget)' if is_chosen else ''} | {peak / 1e9:.2f} GB | "
              f"{'' if expected is None else f'{expected / 1e9:.2f} GB'} | {wall:.0f} s |")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=os.path.join("/tmp", "earmark-label-memory"))
    ap.add_argument("--part", default="scoring,label")
    ap.add_argument("--bases", default="inception_v3,vgg16,musicnn_msd,birdnet",
                    help="scoring part; NAME@PX: an image base at another input size")
    ap.add_argument("--batches", default="2,8,16,32,64,128")
    ap.add_argument("--repeats", type=int, default=2, help="scoring runs per base and batch")
    ap.add_argument("--precision", default="float32",
                    help="image bases in the scoring part (audio bases always float32)")
    ap.add_argument("--label-bases", default="inception_v3,musicnn_msd,birdnet")
    ap.add_argument("--hours", type=float, default=3.0, help="0: no long file")
    ap.add_argument("--short-files", default="1000,3000")
    ap.add_argument("--budget", default="1.5GB")
    ap.add_argument("--batch-size", type=int, default=0, help="also run label at this batch")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    ap.add_argument("--probe-batch", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.probe_batch, args.precision)))
        return
    from earmark.model import memory_budget
    os.makedirs(args.workdir, exist_ok=True)
    parts = set(args.part.split(","))
    t = time.time()
    if "scoring" in parts:
        scoring_part(args.workdir, [b for b in args.bases.split(",") if b],
                     [int(b) for b in args.batches.split(",")], args.precision, args.repeats)
    if "label" in parts:
        label_part(args.workdir, [b for b in args.label_bases.split(",") if b], args.hours,
                   [int(n) for n in args.short_files.split(",") if n],
                   memory_budget.parse_bytes(args.budget), args.batch_size)
    print(f"\n{time.time() - t:.0f} s")


if __name__ == "__main__":
    main()
