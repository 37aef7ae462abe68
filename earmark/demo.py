"""`earmark demo`: the whole product on an embedded corpus, offline, in a few minutes.

1. Generates a labeled corpus deterministically: snore-like rumbles, other sounds (chirps,
   clicks, hiss, tones) and quiet room tone (`background`), mixed into room tone as real
   recordings are.
2. `earmark prepare` (Beam) → `earmark train` (frozen base, new head) → `earmark
   evaluate` (test split) → a generated
   "night" recording with planted events → `earmark label` (Beam) → `earmark report`.
3. Prints the post-processing train calibrated per label (what label uses: the demo passes
   no post-processing flags), then the segments found against the planted truth, scored
   as `earmark evaluate --annotations` scores events (`model.event_metrics`, IoU >= 0.5).
"""
import argparse
import contextlib
import csv
import io
import json
import os
import time

import numpy as np
import soundfile as sf

from earmark import report
from earmark.model import event_metrics, model_files
from earmark.model.events import Event
from earmark.model.segments import model_post_processing, written_labels
from earmark.pipelines import flags

LABELS = ("snore", "other", "background")
EVENT_LABELS = ("snore", "other")
NIGHT_RATE_HZ = 16000
IMAGENET_NOTOP_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"


# ---------------------------------------------------------------- sounds

def room_tone(rng, rate_hz, seconds, level=0.01):
    """Quiet brown-ish noise, like a bedroom at night."""
    n = int(seconds * rate_hz)
    walk = np.cumsum(rng.standard_normal(n))
    walk -= np.convolve(walk, np.ones(512) / 512, mode="same")  # drop the drift
    return level * walk / (np.abs(walk).max() + 1e-9)


def snore_like(rng, rate_hz, seconds):
    """Low-passed noise (~60-400 Hz) with a slow amplitude rhythm, like a snore."""
    n = int(seconds * rate_hz)
    spectrum = np.fft.rfft(rng.standard_normal(n))
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


def sound(label, rng, rate_hz, seconds):
    """One clip of `label` over room tone."""
    tone = room_tone(rng, rate_hz, seconds)
    if label == "background":
        return tone * rng.uniform(0.5, 2.0)
    make = snore_like if label == "snore" else other_sound
    return make(rng, rate_hz, seconds) + tone


def make_corpus(root: str, clips_per_label: int = 40, seed: int = 0) -> str:
    """Write `root/<label>/<label>_NNN.{flac,wav}` at mixed rates; same seed, same bytes."""
    rng = np.random.default_rng(seed)
    for label in LABELS:
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for i in range(clips_per_label):
            rate = int(rng.choice([16000, 22050, 44100, 48000]))
            seconds = float(rng.uniform(1.5, 4.0))
            audio = sound(label, rng, rate, seconds)
            ext, subtype = (".flac", "PCM_16") if i % 2 else (".wav", "PCM_24")
            sf.write(os.path.join(root, label, f"{label}_{i:03d}{ext}"),
                     audio.astype(np.float32), rate, subtype=subtype)
    return root


def make_night(path: str, truth_csv: str, seconds: float = 300.0, seed: int = 1) -> list:
    """A long recording of room tone with snore and other events planted at known times;
    → the truth as [(start_s, end_s, label)], also written to `truth_csv`."""
    rng = np.random.default_rng(seed)
    audio = room_tone(rng, NIGHT_RATE_HZ, seconds)
    truth, t = [], float(rng.uniform(3, 6))
    while True:
        duration = float(rng.uniform(2.0, 4.0))
        if t + duration > seconds - 2:
            break
        label = EVENT_LABELS[int(rng.random() < 0.4)]  # 60 % snores
        start = int(t * NIGHT_RATE_HZ)
        event = sound(label, rng, NIGHT_RATE_HZ, duration)
        audio[start:start + len(event)] += event
        truth.append((round(t, 3), round(t + duration, 3), label))
        t += duration + float(rng.uniform(4.0, 10.0))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, audio.astype(np.float32), NIGHT_RATE_HZ, subtype="PCM_16")
    with open(truth_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start_s", "end_s", "label"])
        w.writerows(truth)
    return truth


# ---------------------------------------------------------------- base choice

def choose_base(base: str, weights: str):
    """→ (base, weights, why). `auto` picks what transfers best without a download."""
    if base != "auto":
        return base, weights, "as asked"
    cached = os.path.join(os.path.expanduser("~"), ".keras", "models", IMAGENET_NOTOP_FILE)
    if os.path.isfile(cached):
        return "inception_v3", "imagenet", "ImageNet weights for InceptionV3 are in the Keras cache"
    from earmark.model import musicnn
    try:
        musicnn.checkpoint_prefix("MSD")
        return "musicnn", None, (
            "ImageNet weights are not in the Keras cache and the demo does not download; "
            "musicnn is pretrained on audio (Million Song Dataset) and ships inside its "
            "wheel, so this is real transfer learning, offline")
    except musicnn.MusicnnNotInstalled:
        return "inception_v3", "none", (
            "no pretrained weights available offline (ImageNet weights need a download, "
            "musicnn is not installed): InceptionV3 with RANDOM weights, which is not "
            "transfer learning; the demo's sounds are easy enough to separate anyway")


# ---------------------------------------------------------------- scoring

NIGHT_KEY = "night"  # the one recording scored
MIN_IOU = 0.5  # as `earmark evaluate --annotations` and train's calibration match events


def event_segments(labels_dir: str) -> list:
    """The labeled events of a run (segments.csv via the report's reader, background
    dropped) as (start_s, end_s, label, confidence)."""
    return [(s.start_s, s.end_s, s.label, s.confidence) for s in report.read_segments(labels_dir)
            if s.label in EVENT_LABELS]


def _events(rows, label=None) -> list:
    """Rows (start_s, end_s, label, ...) as sorted `Event`s, only `label`'s if given."""
    return sorted(Event(float(r[0]), float(r[1]), r[2]) for r in rows
                  if label is None or r[2] == label)


def score_events(truth: list, segments: list, duration_s: float) -> dict:
    """Event-level scores per label, as `earmark evaluate --annotations` computes them
    (`model.event_metrics`: IoU >= 0.5, one-to-one matching): a planted event is found
    when a segment of its label is matched to it; a segment matched to none is a false
    alarm."""
    scored = event_metrics.score({NIGHT_KEY: _events(truth)}, {NIGHT_KEY: _events(segments)},
                                 {NIGHT_KEY: duration_s}, list(EVENT_LABELS),
                                 min_iou=MIN_IOU)["per_label"]
    out = {}
    for label in EVENT_LABELS:
        s, iou = scored[label], scored[label]["iou"]
        out[label] = {"planted": s["truth"], "found": iou["tp"], "segments": s["predicted"],
                      "false_alarms": iou["fp"], "precision": round(iou["precision"], 3),
                      "recall": round(iou["recall"], 3), "f1": round(iou["f1"], 3)}
    return out


def timeline_rows(truth: list, segments: list) -> list:
    """Each planted event beside the segment matched to it (IoU >= 0.5), or MISSED with any
    segments of its label that overlap it too little; then the false alarms."""
    confidence = {(float(s[0]), float(s[1]), s[2]): s[3] for s in segments}
    matched, unmatched = {}, []
    for label in EVENT_LABELS:
        planted, found = _events(truth, label), _events(segments, label)
        pairs = event_metrics.match_iou(planted, found, MIN_IOU)
        matched.update((planted[i], found[j]) for i, j in pairs)
        used = {j for _, j in pairs}
        unmatched += [e for j, e in enumerate(found) if j not in used]

    def show(e, planted=None):
        text = f"{e.start_s:.1f}-{e.end_s:.1f} s ({confidence[(e.start_s, e.end_s, e.label)]:.2f})"
        return text + (f" IoU {event_metrics.iou(planted, e):.2f}" if planted else "")

    rows = []
    for planted in _events(truth):
        if planted in matched:
            text = show(matched[planted], planted)
        else:
            near = [e for e in unmatched if e.label == planted.label
                    and event_metrics.iou(planted, e) > 0]
            text = "MISSED" + (f" (too little overlap: {', '.join(show(e, planted) for e in near)})"
                               if near else "")
        rows.append(f"  {planted.start_s:7.1f}-{planted.end_s:6.1f} s  {planted.label:<6}  {text}")
    rows += [f"  {'false alarm':>16}  {e.label:<6}  {show(e)}" for e in sorted(unmatched)]
    return rows


def post_processing_lines(model_dir: str) -> list:
    """What `earmark label` will do by default with this model, per label, from model.json:
    a header line, then one line per label."""
    meta = model_files.read_local_meta(model_dir)
    written = written_labels(meta)
    calibration = meta.get("calibration", {})
    measured = calibration.get("per_label", {})
    lines = ["demo: label uses the event post-processing train chose per label (model.json"
             + (f"; calibrated on the {calibration['source']}" if measured else "") + "):"]
    for label, (pp, sources) in model_post_processing(meta).items():
        if label not in written:
            lines.append(f"  {label:<11} not written (a background label)")
            continue
        low = (f", low threshold {pp['low_threshold']:g}"
               if pp["low_threshold"] < pp["threshold"] else "")
        line = (f"  {label:<11} threshold {pp['threshold']:g}{low}, smoothing "
                f"{pp['smoothing_windows']} window{'s' if pp['smoothing_windows'] != 1 else ''}, "
                f"min duration {pp['min_duration_s']:g} s, max gap {pp['max_gap_s']:g} s, "
                f"widened {pp['extend_s']:g} s")
        if label in measured:
            m = measured[label]
            line += (f" (validation event F1 {m['event_f1_iou_0.5']:.3f}, "
                     f"P {m['precision']:.3f}, R {m['recall']:.3f})")
        elif set(sources.values()) != {"model"}:
            line += " (defaults: not calibrated)"
        lines.append(line)
    return lines


# ---------------------------------------------------------------- the demo

def build_arg_parser():
    p = flags.ArgumentParser(
        prog="earmark demo",
        description="Run earmark end to end, offline: generate a labeled corpus, prepare it "
                    "(Beam), train a classifier on a frozen pretrained base, label a generated "
                    "night recording (Beam), score the segments against the planted truth, "
                    "and write an HTML report.",
        epilog="examples:\n"
               "  earmark demo\n"
               "  earmark demo --output /tmp/earmark-demo --night-seconds 600\n"
               "  earmark demo --base inception_v3 --weights imagenet   # downloads ImageNet weights",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="earmark-demo", help="folder for everything the demo writes "
                   "(default ./earmark-demo)")
    p.add_argument("--clips-per-label", type=int, default=40, help="training clips per label (default 40)")
    p.add_argument("--night-seconds", type=float, default=300.0,
                   help="length of the generated recording to label (default 300)")
    p.add_argument("--base", default="auto",
                   help="auto (default: ImageNet InceptionV3 if cached, else musicnn, else a "
                        "random InceptionV3), or any base 'earmark train' knows")
    p.add_argument("--weights", default=None, help="passed to 'earmark train' with --base")
    return p


def _step(name, started):
    print(f"demo: {name} done in {time.monotonic() - started:.1f} s", flush=True)
    return time.monotonic()


def main(argv=None) -> dict:
    args, beam_args = build_arg_parser().parse_known_args(argv)
    from earmark.commands import evaluate, train
    from earmark.pipelines import label, label_formats, prepare

    out = os.path.abspath(args.output)
    base, weights, why = choose_base(args.base, args.weights)
    print(f"demo: base {base}" + (f", weights {weights}" if weights else "") + f": {why}", flush=True)
    t0 = started = time.monotonic()
    corpus = make_corpus(os.path.join(out, "corpus"), args.clips_per_label)
    night = os.path.join(out, "night", "night.flac")
    truth_csv = os.path.join(out, "truth.csv")  # not beside the night: label reads that folder
    truth = make_night(night, truth_csv, args.night_seconds)
    print(f"demo: generated {len(LABELS) * args.clips_per_label} clips ({', '.join(LABELS)}) in "
          f"{corpus}, and a {args.night_seconds / 60:.0f}-minute recording with "
          f"{len(truth)} planted events in {os.path.dirname(night)}", flush=True)

    prepared, model_dir = os.path.join(out, "prepared"), os.path.join(out, "model")
    # the demo's folders are its own: a rerun replaces what the last demo wrote there
    prepare.main(["--input", corpus, "--output", prepared, "--base", base, "--split", "70/15/15",
                  "--overwrite"] + beam_args)
    t0 = _step("prepare", t0)
    meta = train.main(["--data", prepared, "--model-dir", model_dir, "--base", base, "--quiet",
                       "--overwrite",
                       "--cache-dir", os.path.join(out, "cache")]
                      + (["--weights", weights] if weights else []))
    val = meta["metrics"]["validation"]
    print(f"demo: trained a {meta['strategy']['used']} {base} base + new head on "
          f"{meta['training']['examples']['train']} patches; validation accuracy "
          f"{val.get('accuracy', float('nan')):.3f} on {val.get('examples', 0)} clips", flush=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the full JSON is in evaluation.json
        scored = evaluate.main(["--model", model_dir, "--data", prepared, "--split", "test"])
    print(f"demo: test split: accuracy {scored['accuracy']:.3f}, macro F1 {scored['macro_f1']:.3f} "
          f"on {scored['examples']} clips (evaluation.json and plots in {model_dir})", flush=True)
    t0 = _step("train and evaluate", t0)
    print("\n".join(post_processing_lines(model_dir)), flush=True)
    labels_dir = os.path.join(out, "labels")
    label.main(["--model", model_dir, "--input", os.path.dirname(night), "--output", labels_dir,
                "--formats", "csv,raven,audacity,jsonl", "--scores", "--overwrite"]
               + beam_args)
    t0 = _step("label", t0)
    html = os.path.join(out, "report.html")
    report.main(["--run", labels_dir, "--model", model_dir, "--output", html])
    _step("report", t0)

    segments = event_segments(labels_dir)
    night_s = sf.info(night).duration
    scores = score_events(truth, segments, night_s)
    print(f"\nplanted event             segment matched (confidence, IoU >= {MIN_IOU:g})")
    print("\n".join(timeline_rows(truth, segments)))
    print(f"\n{'label':<7} {'planted':>7} {'found':>6} {'false alarms':>13} {'precision':>10} "
          f"{'recall':>7} {'F1':>6}")
    for name, s in scores.items():
        print(f"{name:<7} {s['planted']:>7} {s['found']:>6} {s['false_alarms']:>13} "
              f"{s['precision']:>10.3f} {s['recall']:>7.3f} {s['f1']:>6.3f}")
    print(f"\ndemo: finished in {time.monotonic() - started:.0f} s. Outputs:\n"
          f"  model      {model_dir}\n"
          f"  segments   {os.path.join(labels_dir, label_formats.SEGMENTS_CSV)} (+ raven/, audacity/, "
          "segments.jsonl, scores/)\n"
          f"  truth      {truth_csv}\n"
          f"  report     {html}")
    summary = {"base": base, "weights": weights, "why": why, "planted": len(truth),
               "scores": scores, "report": html, "labels_dir": labels_dir,
               "night": night, "night_s": night_s,
               "wall_s": round(time.monotonic() - started, 1)}
    with open(os.path.join(out, "demo.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
