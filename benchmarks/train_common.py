"""Shared helpers of the train benchmarks: prepared sets under a work folder, timing."""
import csv
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EARMARK_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
EARMARK = [sys.executable, "-m", "earmark"]


def shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        sys.exit(f"{path} not found: the benchmarks need ../shared (set EARMARK_SHARED)")
    return path


def prepare(args, out):
    """Run `earmark prepare` once (skipped when `out` already holds a prepared set)."""
    if not os.path.exists(os.path.join(out, "stats.json")):
        subprocess.run(EARMARK + ["prepare", *args, "--output", out], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def prepare_snore(work):
    return prepare(["--input", shared("data", "snoring")], os.path.join(work, "snore"))


def write_esc10_manifests(work):
    """ESC-10 split by fold, never at random: manifests of folds 1-2 and of fold 3."""
    with open(shared("data", "esc10", "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    root = shared("data", "esc10")
    out = []
    for name, folds in (("esc10_f12", {"1", "2"}), ("esc10_f3", {"3"})):
        manifest = os.path.join(work, f"{name}.csv")
        os.makedirs(work, exist_ok=True)
        with open(manifest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label"])
            for r in rows:
                if r["fold"] in folds:
                    w.writerow([os.path.join(root, r["path"]), r["label"]])
        out.append(manifest)
    return tuple(out)


def prepare_esc10(work):
    """ESC-10 split by fold, never at random: folds 1-2 → train/validation (by file),
    fold 3 → test. Two prepared folders with the same label vocabulary."""
    f12, f3 = write_esc10_manifests(work)
    return (prepare(["--manifest", f12, "--split", "90/10/0"], os.path.join(work, "esc10_f12")),
            prepare(["--manifest", f3, "--split", "0/0/100"], os.path.join(work, "esc10_f3")))
