"""Where an `earmark label` run's time goes, phase by phase, and how close its pipeline comes
to the bare forward rate of the same serving function (issue 30), side by side in one run.

    .venv/bin/python benchmarks/label_phases.py [--minutes 20] [--files 120] [--rounds 3]
        [--quick] [--early-export] [--precisions auto,int8] [--workdir DIR]

1. Builds the default model shape as `label_speed.py` does (InceptionV3 at 96 px, random
   weights, trained one epoch on the demo corpus: a real export) and two corpora: one
   `--minutes` recording and `--files` one-minute recordings (cut from one night, as
   `peers_speed.py` cuts them).
2. Runs `earmark label` at its defaults as a fresh process, through a small wrapper (no
   product code changed) that patches the functions it passes through and prints each one's
   time since the process started (the kernel's start time in /proc/self/stat): process
   start → earmark imported → Beam imported → TensorFlow/Keras imported → label.run's checks
   done (`build_pipeline` called) → Pipeline.run called → model loaded
   (`WaveformModelHandler.load_model`) → first chunk decoded → first batch scored (the
   graph's trace included) → last batch scored → outputs written (`FinishRun`) → process
   exit. Imports are timed where they really happen (an import hook), so a lazy import
   shows up inside the phase that triggers it.
3. The pipeline's windows/s (windows scored / first batch start to last batch end) next to
   the bare forward rate of the same serving function (`serving.predictor(...).predict` in a
   fresh process, in the precision the run used, on fixed batches of the run's batch size
   after a warm-up): their ratio is the pipeline's efficiency (the issue's target: >= 0.8).
`--rounds` (default 3) repeats everything, the corpora and the two measures alternating,
and prints medians (each figure's median on its own: the parts need not add up exactly).
`--early-export` adds a run per corpus and round with `earmark.model.export` (so Keras and
TensorFlow) imported at the start of `label.labeling_config`, as label.run did before
`window_spec` moved to `model.model_files`: the move's effect, measured side by side.
`--precisions` (default `auto`) runs each corpus at each `--precision` named: `int8` serves
the model's 8-bit file (which train ships by default) in LiteRT without importing TensorFlow.
`--quick`: a 3-minute file and 8 one-minute files, one round.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from label_speed import ROOT, make_model, make_recording  # noqa: E402

# Run as `python -c TIMELINE label ARGS...`: `earmark label` as `python -m earmark` runs it
# (`cli.main_then_exit`), with timestamps on stderr as "@@ KEY SECONDS" lines, seconds since
# the process started, and a last "@@batches JSON" line.
TIMELINE = r'''
import os, sys, time
def _setup():
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    start = time.time() - (up - ticks / os.sysconf("SC_CLK_TCK"))
    print(f"@@start {start:.6f}", file=sys.stderr, flush=True)
    seen, batches = {}, []
    def mark(key, again=False):
        if key not in seen or again:
            seen[key] = time.time() - start
            print(f"@@ {key} {seen[key]:.4f}", file=sys.stderr, flush=True)
    mark("python")

    def wrap(obj, name, before=None, after=None):
        orig = getattr(obj, name)
        def f(*a, **k):
            if before: before(*a, **k)
            r = orig(*a, **k)
            if after: after(*a, **k)
            return r
        setattr(obj, name, f)

    def patch_beam(beam):
        wrap(beam.Pipeline, "run", before=lambda *a, **k: mark("pipeline_run"))

    def patch_label(label):
        wrap(label, "run", before=lambda *a, **k: mark("label_run"))
        wrap(label, "build_pipeline", before=lambda *a, **k: mark("checks_done"))
        wrap(label.FinishRun, "__call__", after=lambda *a, **k: mark("outputs_written"))
        if os.environ.get("EARMARK_PHASES_EARLY_EXPORT"):   # as label.run did before the move
            def early(*a, **k):
                import earmark.model.export  # noqa: F401
            wrap(label, "labeling_config", before=early)

    def patch_steps(steps):
        h = steps.WaveformModelHandler
        wrap(h, "load_model", before=lambda *a: mark("load_start"), after=lambda *a: mark("load_end"))
        orig_inf = h.run_inference
        def run_inference(self, batch, model, inference_args=None):
            t = time.time() - start
            r = orig_inf(self, batch, model, inference_args)
            batches.append((t, time.time() - start, len(batch)))
            return r
        h.run_inference = run_inference
        wrap(steps, "read_chunk_windows", before=lambda *a, **k: mark("decode_start"),
             after=lambda *a, **k: mark("decode_end"))

    hooks = {"apache_beam": patch_beam, "tensorflow": None, "keras": None,
             "earmark.pipelines.label": patch_label, "earmark.pipelines.label_steps": patch_steps}

    class Watch:
        """Times the imports named in `hooks` where they happen; patches after they ran."""
        def find_spec(self, name, path=None, target=None):
            if name not in hooks:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            orig = spec.loader.exec_module
            def exec_module(module):
                mark(name + "_start")
                orig(module)
                mark(name + "_end")
                if hooks[name]:
                    hooks[name](module)
            spec.loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, Watch())

    from earmark import cli
    mark("earmark")
    def main_returned(*a, **k):
        mark("main_end")
        print("@@batches " + repr(batches), file=sys.stderr, flush=True)
    wrap(cli, "main", after=main_returned)
    return cli
_setup().main_then_exit()
'''

# Run as `python -c BARE MODEL_DIR PRECISION BATCH WINDOWS`: the serving function label calls,
# on fixed batches after a warm-up → one JSON line.
BARE = r'''
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from earmark.model import serving
model_dir, precision, batch, windows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
predictor = serving.predictor(model_dir, precision)
x = (np.random.default_rng(0).standard_normal((batch, predictor.window_samples)) * 0.1).astype(np.float32)
predictor.predict(x)   # traces the graph
predictor.predict(x)   # warm-up
done, t = 0, time.perf_counter()
while done < windows:
    predictor.predict(x)
    done += batch
print(json.dumps({"windows": done, "seconds": time.perf_counter() - t}))
'''

# (key, what the table calls it), in the order a run usually passes them
MILESTONES = [
    ("python", "python started the wrapper (interpreter start-up)"),
    ("earmark", "earmark imported (earmark.cli)"),
    ("apache_beam_end", "Beam imported"),
    ("label_run", "label.run called"),
    ("tf_keras_end", "TensorFlow/Keras imported"),
    ("checks_done", "label.run's checks done (build_pipeline)"),
    ("pipeline_run", "Pipeline.run called"),
    ("load_start", "load_model called"),
    ("load_end", "model loaded"),
    ("decode_end", "first chunk decoded"),
    ("first_start", "first batch starts"),
    ("first_end", "first batch scored (trace included)"),
    ("last_end", "last batch scored"),
    ("outputs_written", "outputs written (FinishRun)"),
    ("main_end", "cli.main returned"),
    ("exit", "process exit"),
]


def build_corpora(work: str, minutes: float, files: int) -> dict:
    """{name: (folder, audio seconds)}: one `minutes` recording and `files` one-minute ones."""
    corpora = {}
    long_dir, short_dir = os.path.join(work, f"long_{minutes:g}"), os.path.join(work, f"short_{files}")
    if not os.path.isdir(long_dir):
        os.makedirs(long_dir + ".tmp", exist_ok=True)
        make_recording(os.path.join(long_dir + ".tmp", "night.wav"), minutes)
        os.rename(long_dir + ".tmp", long_dir)
    corpora[f"one {minutes:g}-min file"] = long_dir
    if not os.path.isdir(short_dir):
        night = os.path.join(work, f"short_{files}_source.wav")  # its truth CSV stays outside
        make_recording(night, files, seed=2)
        audio, rate = sf.read(night, dtype="int16")
        os.makedirs(short_dir + ".tmp", exist_ok=True)
        for i in range(files):
            sf.write(os.path.join(short_dir + ".tmp", f"rec_{i:03d}.wav"),
                     audio[i * 60 * rate:(i + 1) * 60 * rate], rate, "PCM_16")
        os.remove(night)
        os.rename(short_dir + ".tmp", short_dir)
    corpora[f"{files} one-min files"] = short_dir
    return corpora


def timeline_run(model_dir: str, folder: str, out: str, early_export: bool = False,
                 precision: str = "auto") -> dict:
    """One `earmark label` process at its defaults (but `--precision`) → {milestone key:
    seconds since its start}, plus "batches" [(start, end, windows)] and "run" (its
    run.json). TensorFlow's import milestones are NaN where it was never imported."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    env.pop("EARMARK_PHASES_EARLY_EXPORT", None)
    if early_export:
        env["EARMARK_PHASES_EARLY_EXPORT"] = "1"
    proc = subprocess.run([sys.executable, "-c", TIMELINE, "label", "--model", model_dir,
                           "--input", folder, "--output", out, "--precision", precision],
                          capture_output=True, text=True,
                          cwd=ROOT, env=env)
    ended = time.time()
    if proc.returncode:
        sys.exit(f"earmark label failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    t, batches, start = {}, [], None
    for line in proc.stderr.splitlines():
        if line.startswith("@@start "):
            start = float(line.split()[1])
        elif line.startswith("@@batches "):
            batches = eval(line[len("@@batches "):])  # a list of tuples of numbers, ours
        elif line.startswith("@@ "):
            _, key, s = line.split()
            t[key] = float(s)
    t["exit"] = ended - start
    imported = [k for k in ("tensorflow", "keras") if k + "_start" in t]
    t["tf_keras_start"] = min((t[k + "_start"] for k in imported), default=np.nan)
    t["tf_keras_end"] = max((t[k + "_end"] for k in imported), default=np.nan)
    t["first_start"], t["first_end"] = batches[0][0], batches[0][1]
    t["last_end"] = max(e for _, e, _ in batches)
    with open(os.path.join(out, "run.json")) as f:
        t["run"] = json.load(f)
    t["batches"] = batches
    return t


def bare_forward(model_dir: str, precision: str, batch: int, windows: int) -> float:
    """Windows/s of the serving function alone, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", BARE, model_dir, precision, str(batch), str(windows)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"bare forward failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["windows"] / r["seconds"]


def figures(t: dict) -> dict:
    """The derived figures of one run: phase durations, rates, fixed cost."""
    batches = t["batches"]
    windows = sum(n for _, _, n in batches)
    span = t["last_end"] - t["first_start"]
    busy = sum(e - s for s, e, _ in batches)
    after_first = t["last_end"] - t["first_end"]
    return {
        "windows": windows, "batches": len(batches), "batch_size": t["run"]["batch_size"],
        "precision": t["run"]["numeric_precision"]["here"],
        "audio_s": t["run"]["audio_hours"] * 3600,
        "pipeline_wps": windows / span,
        "pipeline_wps_after_first": (windows - batches[0][2]) / after_first if after_first > 0 else np.nan,
        "model_busy": busy / span,   # share of the scoring span spent inside run_inference
        "in_model_wps": (windows - batches[0][2]) / max(busy - (batches[0][1] - batches[0][0]), 1e-9),
        "fixed_cost": t["first_start"], "first_window": t["first_end"], "exit": t["exit"],
        "beam_import": t["apache_beam_end"] - t["apache_beam_start"],
        "tf_import": np.nan_to_num(t["tf_keras_end"] - t["tf_keras_start"]),
        "tf_in_load": t["load_start"] <= t["tf_keras_start"] <= t["load_end"],
        "load": t["load_end"] - t["load_start"],
        "trace_batch": t["first_end"] - t["first_start"],
        "tail": t["exit"] - t["last_end"],
    }


def med(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(values)) if values else np.nan


def print_phases(results: dict, names: list) -> None:
    """One row per milestone, in the order the first column's run passes them: median
    seconds since process start, and since the milestone just before it in the same run
    (whatever its order there: after the window_spec move TensorFlow is imported inside
    load_model), per corpus."""
    def at(r, key):
        return r.get(key, np.nan)

    def took(r, key):
        t = at(r, key)
        before = [at(r, k) for k, _ in MILESTONES if k != key and at(r, k) < t]
        return t - max(before, default=0.0)
    order = sorted(MILESTONES, key=lambda m: med([at(r, m[0]) for r in results[names[0]]]))
    print("\n| phase | " + " | ".join(f"{n}: at (s) | took (s)" for n in names) + " |")
    print("|---" * (1 + 2 * len(names)) + "|")
    for key, what in order:
        cells = []
        for n in names:
            cells += [f"{med([at(r, key) for r in results[n]]):.2f}",
                      f"{med([took(r, key) for r in results[n]]):.2f}"]
        print(f"| {what} | " + " | ".join(cells) + " |")
    for n in names:
        where = {"never" if np.isnan(r["tf_keras_start"]) else "in load_model"
                 if figures(r)["tf_in_load"] else "before Pipeline.run" for r in results[n]}
        print(f"{n}: TensorFlow/Keras imported {' / '.join(sorted(where))}")


def print_parts(results: dict, names: list) -> None:
    """The fixed cost before the first window and its parts, and the tail after the last."""
    def row(what, fn, fmt="{:.2f}"):
        cells = []
        for n in names:
            vals = [fn(r) for r in results[n]]
            cells.append(fmt.format(med(vals)) + (f" ({min(vals):.2f}–{max(vals):.2f})"
                                                  if len(vals) > 1 else ""))
        print(f"| {what} | " + " | ".join(cells) + " |")
    print("\n| fixed cost and its parts, s (median, range) | " + " | ".join(names) + " |")
    print("|---" * (1 + len(names)) + "|")
    row("**fixed cost before the first window** (first batch starts)", lambda r: r["first_start"])
    row("  interpreter start-up", lambda r: r["python"])
    row("  earmark imported", lambda r: r["earmark"] - r["python"])
    row("  Beam import", lambda r: r["apache_beam_end"] - r["apache_beam_start"])
    row("  TensorFlow/Keras import (wherever it happens)", lambda r: figures(r)["tf_import"])
    row("  label.run's checks, TensorFlow/Keras import excluded",
        lambda r: r["checks_done"] - r["label_run"] - _inside(r, "label_run", "checks_done"))
    row("  pipeline construction (build_pipeline → Pipeline.run)", lambda r: r["pipeline_run"] - r["checks_done"])
    row("  Pipeline.run → load_model (Beam start-up, listing, planning)", lambda r: r["load_start"] - r["pipeline_run"])
    row("  model load, TensorFlow/Keras import excluded",
        lambda r: r["load_end"] - r["load_start"] - _inside(r, "load_start", "load_end"))
    row("  model loaded → first batch starts (decode, batching)", lambda r: r["first_start"] - r["load_end"])
    row("first batch (graph trace included)", lambda r: r["first_end"] - r["first_start"])
    row("**first window scored**", lambda r: r["first_end"])
    row("scoring, first batch start → last batch end", lambda r: r["last_end"] - r["first_start"])
    row("last batch → outputs written", lambda r: r["outputs_written"] - r["last_end"])
    row("outputs written → process exit", lambda r: r["exit"] - r["outputs_written"])
    row("**whole command**", lambda r: r["exit"])


def _inside(r, a, b) -> float:
    """The TensorFlow/Keras import's seconds when it happened between milestones a and b."""
    s, e = r["tf_keras_start"], r["tf_keras_end"]
    return e - s if r[a] <= s and e <= r[b] else 0.0


def print_rates(results: dict, bare: dict, names: list) -> None:
    print("\n| corpus | windows (batch, precision) | pipeline windows/s | after the first batch "
          "| bare forward windows/s | **efficiency** (pipeline / bare) | model busy in the "
          "scoring span | in-model windows/s |")
    print("|---" * 8 + "|")
    for n in names:
        fs = [figures(r) for r in results[n]]
        p = [f["pipeline_wps"] for f in fs]
        ratio = [f["pipeline_wps"] / b for f, b in zip(fs, bare[n])]
        print(f"| {n} | {fs[0]['windows']} ({fs[0]['batch_size']}, {fs[0]['precision']}) "
              f"| {med(p):.0f} ({min(p):.0f}–{max(p):.0f}) "
              f"| {med([f['pipeline_wps_after_first'] for f in fs]):.0f} "
              f"| {med(bare[n]):.0f} ({min(bare[n]):.0f}–{max(bare[n]):.0f}) "
              f"| **{med(ratio):.2f}** ({min(ratio):.2f}–{max(ratio):.2f}) "
              f"| {med([f['model_busy'] for f in fs]):.0%} "
              f"| {med([f['in_model_wps'] for f in fs]):.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20, help="the long recording (default 20)")
    ap.add_argument("--files", type=int, default=120, help="one-minute recordings (default 120)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="3 minutes, 8 files, one round")
    ap.add_argument("--early-export", action="store_true",
                    help="also runs importing earmark.model.export in labeling_config (as before "
                         "window_spec moved to model_files)")
    ap.add_argument("--bare-windows", type=int, default=2560,
                    help="windows of the bare forward measure (at most the run's; default 2560)")
    ap.add_argument("--precisions", default="auto",
                    help="--precision of each run, comma-separated (default auto; the model "
                         "ships its 8-bit file, as train does by default)")
    ap.add_argument("--workdir", help="keep the model and corpora here and reuse them")
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.files, args.rounds = 3, 8, 1
    work = args.workdir or tempfile.mkdtemp(prefix="earmark-label-phases-")
    os.makedirs(work, exist_ok=True)
    try:
        model_dir = os.path.join(work, "model")
        if not os.path.isfile(os.path.join(model_dir, "model_int8.tflite")):
            model_dir = make_model(work, "inception_v3", 0)
        corpora = build_corpora(work, args.minutes, args.files)
        precisions = args.precisions.split(",")
        variants = [(n, False, p) for p in precisions for n in corpora]
        if args.early_export:
            variants += [(n, True, precisions[0]) for n in corpora]
        label = {v: (v[0] + (", export imported early" if v[1] else "")
                     + (f", --precision {v[2]}" if len(precisions) > 1 else "")) for v in variants}
        results = {label[v]: [] for v in variants}
        bare = {label[v]: [] for v in variants}
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                name, early, precision = v
                t = timeline_run(model_dir, corpora[name], os.path.join(work, "out"), early,
                                 precision)
                f = figures(t)
                bps = bare_forward(model_dir, f["precision"], f["batch_size"],
                                   min(args.bare_windows, f["windows"]))
                results[label[v]].append(t)
                bare[label[v]].append(bps)
                print(f"round {r + 1}, {label[v]}: whole command {t['exit']:.1f} s, first batch at "
                      f"{t['first_start']:.1f} s, pipeline {f['pipeline_wps']:.0f} windows/s, bare "
                      f"{bps:.0f} windows/s ({f['pipeline_wps'] / bps:.2f}); TensorFlow imported "
                      f"{'never' if np.isnan(t['tf_keras_start']) else 'in load_model' if f['tf_in_load'] else 'before it'}",
                      flush=True)
        names = list(results)
        print(f"\n{os.cpu_count()} cores, {args.rounds} round(s), medians; InceptionV3 at 96 px "
              f"(random weights, one epoch), `earmark label` at its defaults")
        print_phases(results, names)
        print_parts(results, names)
        print_rates(results, bare, names)
        for n in names:
            f = [figures(r) for r in results[n]]
            print(f"{n}: {f[0]['audio_s'] / 60:.0f} min of audio, whole command "
                  f"{med([x['audio_s'] / x['exit'] for x in f]):.1f}x real time")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
