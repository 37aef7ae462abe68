"""Pretrained stand-in vs random-init frozen vs fine-tuned vs scratch, on snore and ESC-10.

snore: prepared 80/10/10 by file; ESC-10: folds 1-2 train/validation (90/10 by file), fold
3 test (split by fold, never at random). VGG16 at 96 px throughout. Prints test accuracy,
macro F1 and training wall time per variant. Usage:

    .venv/bin/python benchmarks/train_strategies.py [--sets snore,esc10] [--variants ...]
"""
import argparse
import os
import time

from train_common import prepare_esc10, prepare_snore, shared

from earmark.commands import train
from earmark.model import evaluate

VARIANTS = {
    "frozen_standin": ["--strategy", "frozen", "--weights", "STANDIN"],
    "frozen_random": ["--strategy", "frozen", "--weights", "none"],
    "finetune_standin": ["--strategy", "finetune", "--weights", "STANDIN",
                         "--finetune-layers", "1", "--finetune-epochs", "6"],
    "scratch": ["--strategy", "scratch", "--weights", "none", "--epochs", "8",
                "--patience", "3", "--learning-rate", "3e-4"],
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sets", default="snore,esc10")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--work", default="/tmp/earmark_bench")
    args = p.parse_args()
    standin = shared("models", "vgg16_hed_notop.weights.h5")
    print("| set | variant | test acc | macro F1 | train wall s | epochs |\n|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        if name == "snore":
            train_dir = test_dir = prepare_snore(args.work)
        else:
            train_dir, test_dir = prepare_esc10(args.work)
        for variant in args.variants.split(","):
            model_dir = os.path.join(args.work, f"m_{name}_{variant}")
            flags = [standin if f == "STANDIN" else f for f in VARIANTS[variant]]
            t0 = time.monotonic()
            meta = train.main(["--data", train_dir, "--model-dir", model_dir, "--base", "vgg16",
                               "--cache-dir", os.path.join(args.work, "cache"), "--quiet",
                               "--overwrite", *flags])
            wall = time.monotonic() - t0
            report = evaluate.evaluate_prepared(model_dir, test_dir, "test",
                                                report_dir=os.path.join(model_dir, "report"))
            print(f"| {name} | {variant} | {report['accuracy']:.3f} | {report['macro_f1']:.3f} "
                  f"| {wall:.0f} | {meta['training']['epochs_run']} |", flush=True)


if __name__ == "__main__":
    main()
