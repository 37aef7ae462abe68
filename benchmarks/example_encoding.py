"""Writing prepared examples: float features from their packed wire form (what
`model.examples._floats` does) vs protocol buffers' per-value conversion
(`tf.train.FloatList(value=...)`, what it did before), side by side in one run.

    .venv/bin/python benchmarks/example_encoding.py [--repeats 50]

For each feature shape `earmark prepare` writes (a 96×64 log-mel patch, a 3-s window at
16 kHz for musicnn, at 48 kHz for BirdNET): milliseconds per whole `make_example`, each way,
the ratio, and whether the serialized bytes are identical.
"""
import argparse
import time
from unittest import mock

import numpy as np
import tensorflow as tf

from earmark.model import examples

SHAPES = {"log-mel patch 96x64": (96, 64), "musicnn window (16 kHz, 3 s)": (48000,),
          "BirdNET window (48 kHz, 3 s)": (144000,)}


def per_value(values):
    """The previous encoding: one Python float per value."""
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def example(patch) -> bytes:
    return examples.make_example(patch, [1], ["snore"], "night 1.flac", "night 1.flac", 1.5,
                                 4.5, False, "hash")


def ms_per_example(patch, repeats) -> tuple:
    example(patch)                                            # warm up
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = example(patch)
    return (time.perf_counter() - t0) / repeats * 1000, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("| features | per value, ms | packed, ms | speed-up | same bytes |\n|---|---|---|---|---|")
    for name, shape in SHAPES.items():
        patch = rng.normal(size=shape).astype(np.float32)
        packed_ms, packed = ms_per_example(patch, args.repeats)
        with mock.patch.object(examples, "_floats", per_value):
            old_ms, old = ms_per_example(patch, args.repeats)
        print(f"| {name} | {old_ms:.3f} | {packed_ms:.3f} | {old_ms / packed_ms:.0f}x | "
              f"{packed == old} |")


if __name__ == "__main__":
    main()
