"""Image CNN vs audio-pretrained embedding bases, through `earmark prepare/train/evaluate`.

Each variant runs the product path: `earmark prepare` (log-mel for image bases, `--base
NAME` waveform windows for embedding bases) → `earmark train --strategy frozen` (fresh
bottleneck cache, so the embedding time is measured) → `earmark evaluate --split test`.
ESC-10: folds 1-2 train/validation (90/10 by file), fold 3 test (split by fold, never at
random); snore: 80/10/10 by file. Embedding time per clip = the bottleneck computation of
`earmark train` (timings_s.bottleneck_s) over the train + validation clips; for image bases
the log-mel frontend ran earlier, in prepare (not counted), embedding bases run their own
frontend inside it. Prints a markdown table. Usage:

    .venv/bin/python benchmarks/embedding_compare.py [--sets esc10,snore] [--variants ...]
"""
import argparse
import json
import os
import shutil

from train_common import prepare, shared, write_esc10_manifests

from earmark.commands import train
from earmark.model import evaluate

# variant → (base, weights, prepare --base)
VARIANTS = {
    "vgg16_standin": ("vgg16", "STANDIN", None),
    "vgg16_random": ("vgg16", "none", None),
    "musicnn_msd": ("musicnn_msd", "pretrained", "musicnn_msd"),
    "musicnn_mtt": ("musicnn_mtt", "pretrained", "musicnn_mtt"),
    "musicnn_msd_random": ("musicnn_msd", "none", "musicnn_msd"),
    "birdnet": ("birdnet", "pretrained", "birdnet"),
}


def prepared_sets(work, name, prep_base):
    """(train dir, test dir) of a set prepared for `prep_base` (None: log-mel)."""
    tag = {None: "logmel", "musicnn_msd": "wave16k", "musicnn_mtt": "wave16k",
           "birdnet": "wave48k"}[prep_base]
    extra = ["--base", prep_base] if prep_base else []
    if name == "snore":
        d = prepare(["--input", shared("data", "snoring"), *extra], os.path.join(work, f"snore_{tag}"))
        return d, d
    f12, f3 = write_esc10_manifests(work)
    return (prepare(["--manifest", f12, "--split", "90/10/0", *extra], os.path.join(work, f"esc10_f12_{tag}")),
            prepare(["--manifest", f3, "--split", "0/0/100", *extra], os.path.join(work, f"esc10_f3_{tag}")))


def clips(prepared_dir):
    with open(os.path.join(prepared_dir, "stats.json")) as f:
        splits = json.load(f)["splits"]
    return sum(v["files"] for s in ("train", "validation") for v in splits[s].values())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sets", default="esc10,snore")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--work", default="/tmp/earmark_embedding_bench")
    args = p.parse_args()
    standin = shared("models", "vgg16_hed_notop.weights.h5")
    rows = []
    for name in args.sets.split(","):
        for variant in args.variants.split(","):
            base, weights, prep_base = VARIANTS[variant]
            train_dir, test_dir = prepared_sets(args.work, name, prep_base)
            model_dir = os.path.join(args.work, "models", f"{name}_{variant}")
            cache = os.path.join(args.work, "cache_tmp")
            shutil.rmtree(cache, ignore_errors=True)
            meta = train.main(["--data", train_dir, "--model-dir", model_dir, "--base", base,
                               "--weights", standin if weights == "STANDIN" else weights,
                               "--strategy", "frozen", "--cache-dir", cache, "--quiet", "--overwrite"])
            report = evaluate.evaluate_prepared(model_dir, test_dir, "test")
            emb_s = meta["training"]["timings_s"]["bottleneck_s"] / clips(train_dir)
            row = (name, variant, report["accuracy"], report["macro_f1"], report["examples"],
                   round(emb_s, 3), meta["training"]["wall_s"], meta["weights"]["checksum"][:12])
            rows.append(row)
            print("ROW", row, flush=True)
    print("\n| set | variant | test acc | macro F1 | test clips | embedding s / clip | "
          "train wall s | weights sha256 |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
