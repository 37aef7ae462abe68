"""Embedding bases: throughput, and a quick measured check that they transfer (ESC-10).

    .venv/bin/python benchmarks/embedding_throughput.py                 # throughput, one run
    .venv/bin/python benchmarks/embedding_throughput.py --transfer      # + ESC-10 fold-3 table

Throughput: audio-seconds of windows embedded per wall-clock second (and per CPU-second of
this process), one run per base after one warm-up batch, on `--windows` windows of real
ESC-10 audio (../shared/data/esc10; synthetic noise when absent). Decoding and resampling
are not counted (they are `model.audio`'s job, benchmarked in frontend_throughput.py).

Transfer (`--transfer`): ESC-10 clips (../shared/data/esc10/labels.csv path,label,fold),
train folds 1–2, test fold 3 (never a random split). Each clip → 3-s windows every
`--hop` s (plus one ending at the clip's end; short clips zero-padded) → embeddings →
mean over windows → StandardScaler (fit on train) → LogisticRegression → accuracy on fold 3.
Embedding time per clip = embedding wall time / clips (decode + resample excluded).
Supplementary column: the same with each of folds 1, 2, 3 as test set once (train on the
other two), accuracy over all 240 clips: less noisy than 80 test clips (1 clip = 1.25 %).
"""
import argparse
import csv
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from earmark.model.audio import load_waveform  # noqa: E402
from earmark.model.audio_bases import SPECS, get_base  # noqa: E402
from earmark.model.windowing import frame_windows  # noqa: E402

SHARED = os.environ.get("EARMARK_SHARED",
                        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared"))
ESC10 = os.path.join(SHARED, "data", "esc10")

# (label in tables, registry name, weights, seed)
VARIANTS = [
    ("musicnn MSD", "musicnn_msd", "pretrained", 0),
    ("musicnn MTT", "musicnn_mtt", "pretrained", 0),
    ("musicnn random init (seed 0)", "musicnn_msd", "random", 0),
    ("musicnn random init (seed 1)", "musicnn_msd", "random", 1),
    ("musicnn random init (seed 2)", "musicnn_msd", "random", 2),
    ("BirdNET V2.4", "birdnet", "pretrained", 0),
]


def build(name, weights, seed, batch_size):
    """batch_size None: each base's default (musicnn 32, BirdNET 1)."""
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    try:
        return get_base(name, weights, seed=seed, **kwargs)   # BirdNET ignores the seed
    except RuntimeError as e:        # wheel not installed
        print(f"  skipped {name}: {e}", flush=True)
        return None


def esc10_rows():
    with open(os.path.join(ESC10, "labels.csv")) as f:
        return list(csv.DictReader(f))


def load_clips(rows, rate_hz):
    out = []
    for r in rows:
        with open(os.path.join(ESC10, r["path"]), "rb") as f:
            out.append(load_waveform(f.read(), rate_hz)[0])
    return out


def throughput(args):
    rows = esc10_rows() if os.path.exists(ESC10) else None
    if args.only is not None:
        return _throughput_rows(args, rows)
    print(f"## Throughput ({args.windows} windows per base, batch {args.batch_size or 'default'}, "
          f"{os.cpu_count()} CPUs, {'ESC-10 audio' if rows else 'synthetic noise'})\n")
    print("| base | window | first 8 windows s (warm-up) | audio-s / wall-s | audio-s / CPU-s | ms / window | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|", flush=True)
    if args.only is None:        # one child process per base, so peak RSS is that base's own
        import subprocess
        for i, (_, _, weights, seed) in enumerate(VARIANTS):
            if not (weights == "random" and seed > 0):
                subprocess.run([sys.executable, __file__, "--only", str(i), "--windows", str(args.windows)]
                               + (["--batch-size", str(args.batch_size)] if args.batch_size else []),
                               check=True)
        return


def _hop(spec, hop_seconds: float) -> int:
    return max(1, int(round(hop_seconds * spec.sample_rate_hz)))


def _throughput_rows(args, rows):
    for label, name, weights, seed in [VARIANTS[args.only]]:
        spec = SPECS[name]
        if rows:
            clips = load_clips(rows[:: max(1, len(rows) // 40)], spec.sample_rate_hz)
            windows = np.concatenate([frame_windows(c, spec.window_samples, spec.sample_rate_hz) for c in clips])
        else:
            windows = np.random.default_rng(0).standard_normal((args.windows, spec.window_samples)) * 0.1
        windows = np.resize(windows, (args.windows, spec.window_samples)).astype(np.float32)
        base = build(name, weights, seed, args.batch_size)
        if base is None:
            continue
        t0 = time.perf_counter()
        base.embed(windows[:8])                    # warm-up: tracing / allocation
        first = time.perf_counter() - t0
        w0, c0 = time.perf_counter(), time.process_time()
        base.embed(windows)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        audio_s = len(windows) * spec.window_seconds
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {label} | {spec.window_seconds:g} s @ {spec.sample_rate_hz // 1000} kHz | {first:.1f} | "
              f"{audio_s / wall:.1f} | {audio_s / cpu:.1f} | {1000 * wall / len(windows):.0f} | {rss:.0f} |",
              flush=True)
        del base


def transfer(args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    if not os.path.exists(ESC10):
        sys.exit(f"{ESC10} not found: --transfer needs ../shared/data/esc10")
    rows = esc10_rows()
    train = [r for r in rows if r["fold"] in ("1", "2")]
    test = [r for r in rows if r["fold"] == "3"]
    print(f"\n## ESC-10 transfer: train folds 1–2 ({len(train)} clips), test fold 3 ({len(test)} clips), "
          f"windows every {args.hop} s, mean-pooled, standardized, logistic regression\n")
    print("| base | weights sha256 (first 12) | fold-3 accuracy | rotation over folds 1–3 | embedding s / clip |")
    print("|---|---|---|---|---|")
    clips = {}
    for label, name, weights, seed in VARIANTS:
        spec = SPECS[name]
        if spec.sample_rate_hz not in clips:
            clips[spec.sample_rate_hz] = load_clips(train + test, spec.sample_rate_hz)
        base = build(name, weights, seed, args.batch_size)
        if base is None:
            continue
        base.embed(np.zeros((2, spec.window_samples), np.float32))    # warm-up
        t0 = time.perf_counter()
        feats = np.stack([base.embed(frame_windows(c, spec.window_samples, _hop(spec, args.hop))).mean(axis=0)
                          for c in clips[spec.sample_rate_hz]])
        per_clip = (time.perf_counter() - t0) / len(feats)
        folds = np.array([r["fold"] for r in train + test])
        labels = np.array([r["label"] for r in train + test])

        def accuracy(test_fold):
            tr, te = folds != test_fold, folds == test_fold
            scaler = StandardScaler().fit(feats[tr])
            clf = LogisticRegression(max_iter=5000, C=1.0).fit(scaler.transform(feats[tr]), labels[tr])
            return np.mean(clf.predict(scaler.transform(feats[te])) == labels[te]), te.sum()
        acc = accuracy("3")[0]
        # supplementary: each of folds 1, 2, 3 tested once, trained on the other two (240 test clips)
        parts = [accuracy(f) for f in ("1", "2", "3")]
        rotation = sum(a * n for a, n in parts) / sum(n for _, n in parts)
        print(f"| {label} | `{base.weights_checksum()[:12]}` | {100 * acc:.1f} % | {100 * rotation:.1f} % | "
              f"{per_clip:.2f} |", flush=True)
        del base


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=None, help="default: each base's own")
    p.add_argument("--hop", type=float, default=1.5, help="window hop in seconds for --transfer")
    p.add_argument("--transfer", action="store_true", help="also run the ESC-10 fold-3 transfer check")
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--only", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only is not None:
        return throughput(args)
    if not args.no_throughput:
        throughput(args)
    if args.transfer:
        transfer(args)


if __name__ == "__main__":
    main()
