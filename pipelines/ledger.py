"""The incremental-labeling ledger: which recording was labeled, in which version, by
which model, in which run. One JSON file under the output, replaced whole (atomically)
only after a run has finished, so a killed run leaves it untouched.

A recording's version is `size:mtime` (GCS `updated` time for gs://): a new or changed
file, or a new model, is labeled again; anything else is skipped.
"""
import csv
import io
import os

from pipelines import fs

LEDGER_FILE = "ledger.json"
RUNS_DIR = "runs"


def version(size_bytes: int, mtime_s: float) -> str:
    return f"{size_bytes}:{mtime_s:.3f}"


def read(output: str) -> dict:
    """{file key: {"version", "model_id", "run_id", "status"}} ({} before the first run)."""
    path = fs.join(output, LEDGER_FILE)
    return fs.read_json(path)["files"] if fs.match(path) else {}


def pending(entries: dict, current: dict, model_id: str) -> list:
    """Keys whose version or model differ from the ledger's (sorted)."""
    return sorted(k for k, v in current.items()
                  if k not in entries or entries[k]["version"] != v
                  or entries[k]["model_id"] != model_id)


def write(output: str, entries: dict) -> None:
    path = fs.join(output, LEDGER_FILE)
    if fs.is_gcs(path):  # an object write is atomic
        fs.write_json(path, {"files": entries})
        return
    fs.write_json(path + ".tmp", {"files": entries})
    os.replace(path + ".tmp", path)


def combined_rows(output: str, entries: dict, table: str) -> list:
    """Rows of `table` (segments.csv) of each file's latest run, sorted by file then start."""
    by_run = {}
    for key, entry in entries.items():
        if entry["status"] == "labeled":
            by_run.setdefault(entry["run_id"], set()).add(key)
    rows = []
    for run_id, keys in sorted(by_run.items()):
        text = fs.read_bytes(fs.join(output, RUNS_DIR, run_id, table)).decode()
        rows += [r for r in csv.DictReader(io.StringIO(text)) if r["file"] in keys]
    return sorted(rows, key=lambda r: (r["file"], float(r["start_s"]), r["label"]))
