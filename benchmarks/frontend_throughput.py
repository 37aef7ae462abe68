"""Frontend throughput: earmark vs a soundfile + soxr + librosa reference.

    .venv/bin/python benchmarks/frontend_throughput.py [--repeats 3] [--corpus DIR ...]

Throughput is audio-seconds per CPU-second (`time.process_time`, this one process, all its
threads), with file bytes read into memory first so disk I/O is not counted.

* earmark:   `model.audio` decode (soundfile) → to_mono → resample (soxr, quality Q) →
             `model.frontend.Frontend.patches` (TF log-mel + 96×64 patches). Same calls as
             `load_waveform` + `Frontend.patches`, timed stage by stage.
* reference: soundfile decode → mean downmix → soxr HQ → `librosa.feature.melspectrogram`
             (n_fft 512, win 400, hop 160, 64 mels 125–7500 Hz, htk, norm=None, power 1,
             center=False) → log(mel + 0.01) → 96×64 patches (numpy view).
  The signal is padded by 56 samples each side so librosa's 512-sample frames (400-sample
  window centred) cover the same samples as earmark's frames, and short clips are padded to
  one patch as earmark does: both sides compute the same frames.
* reference+cache: the same with the mel basis built once (a stronger baseline, since
  `melspectrogram` rebuilds the filterbank on every call).

Also: earmark at each soxr quality (HQ, MQ, LQ, QQ) and the log-mel deviation of each from
HQ on every file (max abs, 99.99th percentile, mean abs), and earmark-vs-librosa parity.
"""
import argparse
import glob
import io
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _threads_flag(argv):
    """--threads N must act before numpy/TF load their thread pools."""
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 0


THREADS = _threads_flag(sys.argv[1:])
if THREADS:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(THREADS)

import librosa  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

from earmark.model import audio  # noqa: E402
from earmark.model.features import FeatureConfig  # noqa: E402
from earmark.model.frontend import Frontend  # noqa: E402

DEFAULT_CORPORA = [os.path.join(ROOT, "..", "shared", "data", c) for c in ("sonicpi", "snoring")]
QUALITIES = ("HQ", "MQ", "LQ", "QQ")
STAGES = ("decode", "mono", "resample", "logmel")


def load_corpus(folder):
    """All audio files under `folder` → list of (name, bytes, native duration s)."""
    paths = sorted(p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
                   if os.path.splitext(p)[1].lower() in (".flac", ".wav", ".ogg", ".mp3"))
    files = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        info = sf.info(p)
        files.append((p, data, info.frames / info.samplerate))
    return files


def earmark_file(file, frontend, quality):
    """The earmark path on one file; → (cpu seconds per stage, log-mel patches)."""
    name, data, _ = file
    c0 = time.process_time()
    samples, rate = audio.decode(data, name)
    c1 = time.process_time()
    mono = audio.to_mono(samples)
    c2 = time.process_time()
    wave = audio.resample(mono, rate, frontend.config.sample_rate_hz, quality)
    c3 = time.process_time()
    patches, _, _ = frontend.patches(wave)
    c4 = time.process_time()
    return (c1 - c0, c2 - c1, c3 - c2, c4 - c3), patches


class Reference:
    """soundfile + soxr HQ + librosa log-mel with earmark's parameters."""

    def __init__(self, config: FeatureConfig, cache_mel_basis: bool):
        self.c = config
        self.pad = (config.fft_length - config.window_samples) // 2
        self.mel_basis = librosa.filters.mel(
            sr=config.sample_rate_hz, n_fft=config.fft_length, n_mels=config.mel_bins,
            fmin=config.mel_min_hz, fmax=config.mel_max_hz, htk=True, norm=None
        ) if cache_mel_basis else None

    def log_mel(self, wave):
        c = self.c
        if len(wave) < c.patch_samples:
            wave = np.pad(wave, (0, c.patch_samples - len(wave)))
        y = np.pad(wave, (self.pad, self.pad))
        if self.mel_basis is None:
            mel = librosa.feature.melspectrogram(
                y=y, sr=c.sample_rate_hz, n_fft=c.fft_length, hop_length=c.hop_samples,
                win_length=c.window_samples, window="hann", center=False, power=1.0,
                n_mels=c.mel_bins, fmin=c.mel_min_hz, fmax=c.mel_max_hz, htk=True, norm=None)
        else:
            spec = np.abs(librosa.stft(y, n_fft=c.fft_length, hop_length=c.hop_samples,
                                       win_length=c.window_samples, window="hann",
                                       center=False))
            mel = self.mel_basis @ spec
        logmel = np.log(mel + c.log_offset).T  # [frames, mel_bins]
        n = 1 + (logmel.shape[0] - c.patch_frames) // c.patch_hop_frames
        return np.lib.stride_tricks.sliding_window_view(
            logmel, c.patch_frames, axis=0)[::c.patch_hop_frames][:n].transpose(0, 2, 1)

    def file(self, file):
        _, data, _ = file
        c0 = time.process_time()
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        c1 = time.process_time()
        mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
        c2 = time.process_time()
        wave = (soxr.resample(mono, rate, self.c.sample_rate_hz, quality="HQ")
                if rate != self.c.sample_rate_hz else mono)
        c3 = time.process_time()
        patches = self.log_mel(wave)
        c4 = time.process_time()
        return (c1 - c0, c2 - c1, c3 - c2, c4 - c3), patches


def measure(files, methods, repeats):
    """Per method, per-stage CPU seconds summed over files. Methods are interleaved file by
    file and each file keeps its fastest repeat, so a burst of load from other processes
    lands on one repeat of one file, not on a whole method. → ({method: stage times},
    {method: [patches per file]})."""
    best = {m: [None] * len(files) for m in methods}
    outputs = {m: [None] * len(files) for m in methods}
    for _ in range(repeats):
        for i, f in enumerate(files):
            for m, fn in methods.items():
                t, out = fn(f)
                if best[m][i] is None or sum(t) < sum(best[m][i]):
                    best[m][i] = t
                outputs[m][i] = out
    return ({m: dict(zip(STAGES, np.sum(rows, axis=0))) for m, rows in best.items()}, outputs)


def deviation(a_list, b_list):
    """Max abs, 99.99th percentile and mean abs of a-b over all files (frames aligned)."""
    diffs = []
    for a, b in zip(a_list, b_list):
        n = min(len(a), len(b))
        diffs.append(np.abs(a[:n] - b[:n]).ravel())
    d = np.concatenate(diffs)
    return float(d.max()), float(np.percentile(d, 99.99)), float(d.mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", action="append", help="corpus folder (default: sonicpi, snoring)")
    p.add_argument("--repeats", type=int, default=3, help="passes per method; best is kept")
    p.add_argument("--threads", type=int, default=0,
                   help="TF intra/inter-op and BLAS/OMP threads (default 0: library defaults)")
    args = p.parse_args(argv)
    if args.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    corpora = args.corpus or DEFAULT_CORPORA
    config = FeatureConfig()
    frontend = Frontend(config)
    frontend.patches(np.zeros(config.patch_samples * 2, np.float32))  # trace once, untimed
    methods = {f"earmark {q}": (lambda f, q=q: earmark_file(f, frontend, q))
               for q in QUALITIES}
    ref, ref_cached = Reference(config, False), Reference(config, True)
    methods["reference"] = ref.file
    methods["reference+cache"] = ref_cached.file

    import tensorflow as tf
    tf_threads = tf.config.threading.get_intra_op_parallelism_threads() or "auto"
    print(f"frontend throughput, audio-seconds per CPU-second (time.process_time, 1 process; "
          f"TF intra-op threads {tf_threads}, "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'auto')}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}); per file, best of {args.repeats}")
    summary = {}
    for folder in corpora:
        name = os.path.basename(os.path.normpath(folder))
        files = load_corpus(folder)
        audio_s = sum(f[2] for f in files)
        for m in methods.values():  # warm caches (soxr, librosa, TF) untimed
            for f in files[:3]:
                m(f)
        best, outputs = measure(files, methods, args.repeats)
        ref_total = sum(best["reference"].values())
        refc_total = sum(best["reference+cache"].values())
        print(f"\n== {name}: {len(files)} files, {audio_s:.1f} audio-s")
        print(f"{'method':<16} {'cpu s':>7} {'audio-s/cpu-s':>13} {'vs ref':>7} {'vs ref+c':>8}"
              + "".join(f" {s + ' %':>10}" for s in STAGES))
        for label, t in best.items():
            total = sum(t.values())
            print(f"{label:<16} {total:7.3f} {audio_s / total:13.1f} {ref_total / total:6.2f}x "
                  f"{refc_total / total:7.2f}x"
                  + "".join(f" {100 * t[s] / total:10.1f}" for s in STAGES))
        summary[name] = {k: audio_s / sum(v.values()) for k, v in best.items()}

        hq = outputs["earmark HQ"]
        print(f"{'log-mel vs earmark HQ':<24} {'max abs':>8} {'p99.99':>8} {'mean abs':>9}")
        for label in [f"earmark {q}" for q in QUALITIES[1:]] + ["reference"]:
            print(f"{label:<24} " + "{:8.4f} {:8.4f} {:9.5f}".format(
                *deviation(outputs[label], hq)))

    print(f"\nratio vs reference (audio-s per CPU-s, earmark / reference), load average "
          f"{os.getloadavg()[0]:.2f}:")
    for name, s in summary.items():
        print(f"  {name:<10} " + "  ".join(
            f"{q} {s['earmark ' + q] / s['reference']:.2f}x" for q in QUALITIES)
            + f"   (vs reference+cache: HQ {s['earmark HQ'] / s['reference+cache']:.2f}x)")


if __name__ == "__main__":
    main()
