"""Accuracy and images/s of each base at input sizes 96, 150, 224 on the snore set.

Frozen base, bottleneck features of every split, the real head trained on them (as
`earmark train --strategy frozen`), accuracy on the test split. VGG16 uses the stand-in
weights file; the other bases have no offline weights here and run with weights none
(random init), said so in the table. img/s is the base forward pass (adapter + base) on
this machine. Usage:

    .venv/bin/python benchmarks/train_bases.py [--bases vgg16,inception_v3] [--sizes 96,150]
"""
import argparse
import os
import time

import keras

from train_common import prepare_snore, shared

from earmark.model import bottleneck, data, image_bases
from earmark.model.adapter import InputStats
from earmark.model.head import HeadConfig, build_head
from earmark.model.train import _fit, one_hot


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bases", default=",".join(sorted(image_bases.BASES)))
    p.add_argument("--sizes", default="96,150,224")
    p.add_argument("--pooling", default="multiscale")
    p.add_argument("--work", default="/tmp/earmark_bench")
    args = p.parse_args()
    prepared = data.open_prepared(prepare_snore(args.work))
    splits = {s: data.read_split(prepared, s) for s in data.SPLITS}
    stats = InputStats.from_array(splits["train"].log_mel)
    n = len(prepared.labels)
    print(f"snore: train {len(splits['train'])}, validation {len(splits['validation'])}, "
          f"test {len(splits['test'])}; pooling {args.pooling}; {os.cpu_count()} CPUs")
    print("| base | weights | px | img/s | val acc | test acc |\n|---|---|---|---|---|---|")
    for name in args.bases.split(","):
        weights = shared("models", "vgg16_hed_notop.weights.h5") if name == "vgg16" else "none"
        for px in map(int, args.sizes.split(",")):
            if px < image_bases.get_spec(name).min_input_px:
                continue
            spec = bottleneck.EmbedderSpec(name, weights, px, stats.mean, stats.std, 96, 64,
                                           0, args.pooling)
            embedder, _ = bottleneck.build_embedder(spec)
            bottleneck.embed(embedder, splits["train"].log_mel[:8])   # trace once
            t0 = time.monotonic()
            feats = {s: bottleneck.embed(embedder, a.log_mel) for s, a in splits.items()}
            ips = sum(len(a) for a in splits.values()) / (time.monotonic() - t0)
            keras.utils.set_random_seed(0)
            head = build_head(feats["train"].shape[1], HeadConfig(n), feats["train"])
            _fit(head, (feats["train"], one_hot(splits["train"].label, n), 32),
                 (feats["validation"], one_hot(splits["validation"].label, n)), 40, 8, 1e-3,
                 "categorical_crossentropy", 0)
            acc = {s: float((head.predict(feats[s], verbose=0).argmax(1) == splits[s].label).mean())
                   for s in ("validation", "test")}
            wname = "stand-in file" if weights != "none" else "none (random)"
            print(f"| {name} | {wname} | {px} | {ips:.0f} | {acc['validation']:.3f} | "
                  f"{acc['test']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
