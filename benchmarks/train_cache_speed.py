"""Frozen training on the snore set: through the base every epoch vs from the bottleneck cache.

Same data, base (VGG16 + the stand-in weights at 96 px), head and epochs (early stopping off);
one run each. Prints wall times and the ratio (target >= 10x). Usage:

    .venv/bin/python benchmarks/train_cache_speed.py [--epochs 15] [--work /tmp/earmark_bench]
"""
import argparse
import os
import shutil
import time

from train_common import prepare_snore, shared

from earmark.commands import train
from earmark.model import model_files


def run(data, model_dir, cache, epochs, *extra):
    t0 = time.monotonic()
    train.main(["--data", data, "--model-dir", model_dir, "--base", "vgg16",
                "--weights", shared("models", "vgg16_hed_notop.weights.h5"),
                "--strategy", "frozen", "--epochs", str(epochs), "--patience", str(epochs),
                "--cache-dir", cache, "--quiet", "--overwrite", *extra])
    wall = time.monotonic() - t0
    return wall, model_files.read_local_meta(model_dir)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--work", default="/tmp/earmark_bench")
    args = p.parse_args()
    data = prepare_snore(args.work)
    cache = os.path.join(args.work, "cache_speed")
    shutil.rmtree(cache, ignore_errors=True)
    m = lambda n: os.path.join(args.work, n)  # noqa: E731
    cold, meta_cold = run(data, m("m_cache"), cache, args.epochs)
    warm, meta_warm = run(data, m("m_cache2"), cache, args.epochs)
    base, meta_base = run(data, m("m_base"), cache, args.epochs, "--no-cache")
    rows = [("through the base every epoch", base, meta_base),
            ("bottleneck cache, cold (computes it)", cold, meta_cold),
            ("bottleneck cache, warm (reuses it)", warm, meta_warm)]
    print(f"\nfrozen VGG16 stand-in @96 px, snore train {meta_cold['training']['examples']}, "
          f"{args.epochs} epochs, {os.cpu_count()} CPUs")
    print(f"| run | wall s | epochs | val acc | speed-up |\n|---|---|---|---|---|")
    for name, wall, meta in rows:
        print(f"| {name} | {wall:.1f} | {meta['training']['epochs_run']} | "
              f"{meta['metrics']['validation']['accuracy']:.3f} | {base / wall:.1f}x |")


if __name__ == "__main__":
    main()
