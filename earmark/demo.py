"""`earmark demo`: the whole product on an embedded corpus, offline.

For now it generates a small labeled corpus deterministically (snore-like low rumbles
with a breathing rhythm vs. other sounds: chirps, clicks, hiss, tones) and runs
`earmark prepare` on it. Training and labeling join as those steps land.
"""
import argparse
import os

import numpy as np
import soundfile as sf

LABELS = ("snore", "other")


def snore_like(rng, rate_hz, seconds):
    """Low-passed noise (~60-400 Hz) with a slow amplitude rhythm, like a snore."""
    n = int(seconds * rate_hz)
    noise = rng.standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / rate_hz)
    spectrum[(freqs < 60) | (freqs > 400)] = 0
    rumble = np.fft.irfft(spectrum, n)
    t = np.arange(n) / rate_hz
    envelope = np.clip(np.sin(np.pi * t / seconds), 0, None) ** 0.5
    envelope *= 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(20, 40) * t)  # vocal-fold flutter
    out = rumble * envelope
    return 0.6 * out / (np.abs(out).max() + 1e-9)


def other_sound(rng, rate_hz, seconds):
    """One of: a rising chirp, a click train, bright hiss, or a high tone."""
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    kind = rng.integers(4)
    if kind == 0:
        f0, f1 = rng.uniform(800, 1500), rng.uniform(3000, 6000)
        out = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds)))
    elif kind == 1:
        out = np.zeros(n)
        out[:: int(rate_hz / rng.uniform(5, 15))] = 1.0
        out = np.convolve(out, np.exp(-np.arange(200) / 20.0), mode="same")
    elif kind == 2:
        out = np.diff(rng.standard_normal(n + 1))  # high-passed noise
    else:
        out = np.sin(2 * np.pi * rng.uniform(1500, 5000) * t)
    return 0.4 * out / (np.abs(out).max() + 1e-9)


def make_corpus(root: str, clips_per_label: int = 40, seed: int = 0) -> str:
    """Write `root/<label>/<n>.{flac,wav}`; same seed, same bytes."""
    rng = np.random.default_rng(seed)
    for label in LABELS:
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for i in range(clips_per_label):
            rate = int(rng.choice([16000, 22050, 44100, 48000]))
            seconds = float(rng.uniform(1.0, 2.5))
            make = snore_like if label == "snore" else other_sound
            audio = make(rng, rate, seconds) + 0.01 * rng.standard_normal(int(seconds * rate))
            ext, subtype = (".flac", "PCM_16") if i % 2 else (".wav", "PCM_24")
            sf.write(os.path.join(root, label, f"{label}_{i:03d}{ext}"),
                     audio.astype(np.float32), rate, subtype=subtype)
    return root


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="earmark demo",
        description="Run earmark end to end on a small generated corpus, offline.",
        epilog="example:\n  earmark demo --output /tmp/earmark-demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="earmark-demo", help="folder for everything the demo writes")
    p.add_argument("--clips-per-label", type=int, default=40)
    args, beam_args = p.parse_known_args(argv)
    corpus = make_corpus(os.path.join(args.output, "corpus"), args.clips_per_label)
    print(f"demo: generated {2 * args.clips_per_label} clips in {corpus}")
    from pipelines import prepare
    prepared = os.path.join(args.output, "prepared")
    prepare.main(["--input", corpus, "--output", prepared] + beam_args)
    print(f"demo: prepared TFRecords, features.json and stats.json are in {prepared}")
