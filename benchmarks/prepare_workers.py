"""`earmark prepare` wall time: 1 worker vs 2 workers (DirectRunner), side by side.

    .venv/bin/python benchmarks/prepare_workers.py [--corpus DIR ...] [--copies N]
        [--repeats 1] [--config NAME=FLAGS ...] [--env VAR=VALUE ...]

Each configuration runs `earmark prepare` in a fresh process (as a user would) on the corpus
and on a 10-file sample of it. The sample's time is the fixed cost (interpreter, TensorFlow
and Beam imports, worker start-up: each multi-processing worker imports TF again); the
difference is the time the corpus itself costs. Printed: wall time, child CPU time, and the
speedup over the first configuration for the whole command and for the per-file part.
`--copies N` links each file N times (as distinct recordings) to make the work outweigh
the fixed cost. Default configurations:

  in_memory x1   --direct_num_workers=1 (in-process, the default running mode)
  multi_proc x1  --direct_num_workers=1 --direct_running_mode=multi_processing
  multi_proc x2  --direct_num_workers=2 --direct_running_mode=multi_processing

`--env VAR=VALUE` (repeatable) sets environment variables in every run, e.g. to pin
thread pools: --env OMP_NUM_THREADS=1 --env TF_NUM_INTRAOP_THREADS=1
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPORA = [os.path.join(ROOT, "..", "shared", "data", "snoring")]
DEFAULT_CONFIGS = [
    ("in_memory x1", "--direct_num_workers=1"),
    ("multi_proc x1", "--direct_num_workers=1 --direct_running_mode=multi_processing"),
    ("multi_proc x2", "--direct_num_workers=2 --direct_running_mode=multi_processing"),
]

# Runs in the child: time the imports apart from the pipeline, then print one JSON line.
DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
from earmark import cli
t1 = time.perf_counter()
rc = cli.main(sys.argv[1:])
t2 = time.perf_counter()
print("BENCH " + json.dumps({"import_s": t1 - t0, "run_s": t2 - t1, "rc": rc}))
"""


def sample_corpus(corpus, workdir, copies, limit=None):
    """A <label>/<file> corpus of symlinks: every file `copies` times, or `limit` files."""
    dest = tempfile.mkdtemp(prefix="corpus-", dir=workdir)
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(corpus) for f in names
                   if os.path.splitext(f)[1].lower() in (".flac", ".wav", ".ogg", ".mp3"))
    if limit:  # spread the sample over the labels
        files = files[::max(1, len(files) // limit)][:limit]
    for path in files:
        label_dir = os.path.join(dest, os.path.basename(os.path.dirname(path)))
        os.makedirs(label_dir, exist_ok=True)
        for k in range(copies):
            os.symlink(os.path.abspath(path),
                       os.path.join(label_dir, f"c{k}_" + os.path.basename(path)))
    return dest


def run_once(corpus, flags, env_extra, workdir):
    out = tempfile.mkdtemp(prefix="out-", dir=workdir)
    argv = ["prepare", "--input", corpus, "--output", out] + shlex.split(flags)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env_extra)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cpu0 = os.times()
    w0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", DRIVER] + argv, cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - w0
    cpu1 = os.times()
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not line:
        sys.exit(f"prepare failed ({flags}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    info = json.loads(line[-1][6:])
    with open(os.path.join(out, "stats.json")) as f:
        stats = json.load(f)
    child_cpu = (cpu1.children_user - cpu0.children_user) + (cpu1.children_system
                                                             - cpu0.children_system)
    return {"wall_s": wall, "run_s": info["run_s"], "cpu_s": child_cpu,
            "files_ok": stats["files_ok"], "patches": stats["patches"]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", action="append", help="corpus folder (default: snoring)")
    p.add_argument("--copies", type=int, default=1, help="link each file N times (default 1)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration; best kept")
    p.add_argument("--config", action="append", metavar="NAME=FLAGS",
                   help="a configuration to time (repeatable; default: the three above)")
    p.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                   help="environment for every run (repeatable)")
    args = p.parse_args(argv)
    corpora = args.corpus or DEFAULT_CORPORA
    configs = ([tuple(c.split("=", 1)) for c in args.config] if args.config
               else DEFAULT_CONFIGS)
    env_extra = dict(e.split("=", 1) for e in args.env)
    print(f"earmark prepare wall time, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}, env {env_extra or '-'}, best of {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="earmark-bench-") as workdir:
        for corpus in corpora:
            name = os.path.basename(os.path.normpath(corpus))
            full = sample_corpus(corpus, workdir, args.copies)
            tiny = sample_corpus(corpus, workdir, 1, limit=10)
            results = {}
            for _ in range(args.repeats):  # interleave configurations
                for label, flags in configs:
                    for kind, path in (("full", full), ("tiny", tiny)):
                        r = run_once(path, flags, env_extra, workdir)
                        key = (label, kind)
                        if key not in results or r["wall_s"] < results[key]["wall_s"]:
                            results[key] = r
            first = results[configs[0][0], "full"]
            first_tiny = results[configs[0][0], "tiny"]
            first_marginal = first["wall_s"] - first_tiny["wall_s"]
            print(f"\n== {name} x{args.copies}: {first['files_ok']} files, "
                  f"{first['patches']} patches (fixed cost: the same on 10 files)")
            print(f"{'configuration':<15} {'wall s':>7} {'cpu s':>6} {'fixed wall':>10} "
                  f"{'fixed cpu':>9} {'per-file wall':>13} {'cpu ms/file':>11} {'speedup':>8} "
                  f"{'per-file speedup':>16}")
            n = first["files_ok"] - first_tiny["files_ok"]
            for label, _ in configs:
                r, t = results[label, "full"], results[label, "tiny"]
                assert r["patches"] == first["patches"], "configurations disagree on patches"
                marginal = r["wall_s"] - t["wall_s"]
                print(f"{label:<15} {r['wall_s']:7.1f} {r['cpu_s']:6.1f} {t['wall_s']:10.1f} "
                      f"{t['cpu_s']:9.1f} {marginal:13.1f} "
                      f"{1000 * (r['cpu_s'] - t['cpu_s']) / n:11.2f} "
                      f"{first['wall_s'] / r['wall_s']:7.2f}x "
                      f"{first_marginal / marginal if marginal > 0 else float('nan'):15.2f}x")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f} (other processes on the "
          "machine skew wall times)")


if __name__ == "__main__":
    main()
