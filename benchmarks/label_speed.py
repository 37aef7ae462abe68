"""`earmark label` speed and memory, measured side by side in one run.

    .venv/bin/python benchmarks/label_speed.py [--minutes 20] [--rss-minutes 30,60,120]
        [--base inception_v3] [--input-size 0] [--workers 1]

1. Builds a recording of `--minutes` (from ../shared/data/snoring with make_night.py when
   present, else generated sound) and a model with the chosen base (random weights: speed
   does not depend on them; trained for one epoch on the demo corpus so it is a real export).
2. Real-time factor: audio hours labeled per wall hour by `earmark label` (a fresh process,
   as a user runs it), default flags (hop 0.48 s, chunks of 60 s).
3. Pipeline efficiency: the bare model's forward time over the same number of windows (a
   tight loop of fixed-size batches) divided by `earmark label`'s wall time.
4. Peak RSS of `earmark label` on files of each of `--rss-minutes` (should stay flat).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
sys.path.insert(0, ROOT)


def make_recording(path, minutes, seed=1):
    snoring = os.path.join(SHARED, "data", "snoring")
    if os.path.isdir(snoring):
        subprocess.run([sys.executable, os.path.join(SHARED, "tools", "make_night.py"), snoring, path,
                        "--truth", path + ".truth.csv", "--minutes", str(minutes), "--seed", str(seed),
                        "--events", str(int(6 * minutes)), "--distractors", str(int(12 * minutes))],
                       check=True, capture_output=True)
    else:  # a quiet floor with tones: same cost per second for the pipeline
        import soundfile as sf
        rng = np.random.default_rng(seed)
        with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
            for _ in range(int(minutes)):
                f.write((0.01 * rng.standard_normal(16000 * 60)).astype(np.float32))


def make_model(workdir, base, input_size, int8=None):
    """A real export of `base` (random weights, one epoch on the demo corpus); `int8`: None
    trains at train's default (image bases ship model_int8.tflite), False with --no-int8,
    True with --int8."""
    from earmark import demo
    corpus = demo.make_corpus(os.path.join(workdir, "corpus"), clips_per_label=10)
    prepared, model_dir = os.path.join(workdir, "prepared"), os.path.join(workdir, "model")
    earmark = [sys.executable, "-m", "earmark"]
    subprocess.run(earmark + ["prepare", "--input", corpus, "--output", prepared], check=True,
                   capture_output=True, cwd=ROOT)
    cmd = earmark + ["train", "--data", prepared, "--model-dir", model_dir, "--base", base,
                     "--weights", "none", "--strategy", "frozen", "--epochs", "1", "--quiet", "--overwrite",
                     "--cache-dir", os.path.join(workdir, "cache")]
    if input_size:
        cmd += ["--input-size", str(input_size)]
    if int8 is not None:
        cmd += ["--int8" if int8 else "--no-int8"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return model_dir


def timed_label(model_dir, folder, out, workers, batch_size):
    """Run `earmark label` in a wrapper process → (wall seconds, peak RSS MB, run.json)."""
    extra = ["--batch-size", str(batch_size)]
    if workers > 1:
        extra += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    wrapper = ("import resource, subprocess, sys, time; t = time.time(); "
               "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
               "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "earmark", "label", "--model",
           model_dir, "--input", folder, "--output", out] + extra
    wall, rss_kb = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                  cwd=ROOT).stdout.split()
    with open(os.path.join(out, "run.json")) as f:
        return float(wall), int(rss_kb) / 1024, json.load(f)


def bare_forward_seconds(model_dir, windows, batch_size):
    """The serving function the pipeline calls (`Predictor.predict`), in a tight loop of
    `batch_size` batches over `windows` windows, after one warm-up call."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from earmark.model import serving
    predictor = serving.predictor(model_dir)
    batch = np.random.default_rng(0).standard_normal(
        (batch_size, predictor.window_samples)).astype(np.float32) * 0.1
    predictor.predict(batch)  # warm-up (traces the graph)
    t = time.perf_counter()
    done = 0
    while done < windows:
        predictor.predict(batch[:min(batch_size, windows - done)])
        done += batch_size
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--rss-minutes", default="30,60,120")
    ap.add_argument("--base", default="inception_v3")
    ap.add_argument("--input-size", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128, help="label's --batch-size (default 128, its default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="earmark-label-bench-") as work:
        model_dir = make_model(work, args.base, args.input_size)
        folder = os.path.join(work, "rec")
        os.makedirs(folder)
        make_recording(os.path.join(folder, "night.wav"), args.minutes)
        wall, rss, run = timed_label(model_dir, folder, os.path.join(work, "out"), args.workers,
                                     args.batch_size)
        windows = int(round(run["audio_hours"] * 3600 / run["hop_s"]))
        bare = bare_forward_seconds(model_dir, windows, args.batch_size)
        print(f"base {args.base}, {args.minutes:g}-min recording, {windows} windows, batch "
              f"{args.batch_size}, {args.workers} worker(s), {os.cpu_count()} cores")
        audio_s = run["audio_hours"] * 3600
        print(f"  earmark label command  {wall:8.1f} s   -> {audio_s / wall:6.1f}x real time (with start-up)")
        print(f"  pipeline (run.json)    {run['wall_s']:8.1f} s   -> {audio_s / run['wall_s']:6.1f}x real time")
        print(f"  bare model forward     {bare:8.1f} s   -> pipeline efficiency {bare / run['wall_s']:.2f}")
        print(f"  peak RSS               {rss:8.0f} MB")
        for minutes in [float(m) for m in args.rss_minutes.split(",") if m]:
            folder = os.path.join(work, f"rss{minutes:g}")
            os.makedirs(folder)
            make_recording(os.path.join(folder, "long.wav"), minutes, seed=2)
            w, r, run = timed_label(model_dir, folder, os.path.join(work, f"out{minutes:g}"), args.workers,
                                    args.batch_size)
            print(f"  {minutes:5g}-min file: peak RSS {r:6.0f} MB, {run['audio_hours'] * 3600 / w:6.1f}x real time")
            os.remove(os.path.join(folder, "long.wav"))


if __name__ == "__main__":
    main()
