"""The incremental-labeling ledger: which recording was labeled, in which version, by
which model, in which run. One JSON file under the output, replaced whole (atomically)
as a run's very last write, after the run's partition (`runs/RUN_ID/`) and the combined
view at the top (`segments.csv`, `segments.jsonl`, `sources.csv`, `run.json`) are
written; it names that run (`complete_run`) and the sha256 of each combined file, so the
next run can tell a combined view that a kill left half-written and rebuild it from
`runs/`. A killed run leaves the ledger as it was.

A recording's version is `size:mtime` (GCS `updated` time for gs://): a new or changed
file, or a new model, is labeled again; anything else is skipped.
"""
import hashlib
import json

from earmark.pipelines import fs, label_formats, outputs

LEDGER_FILE = "ledger.json"
RUNS_DIR = "runs"


def version(size_bytes: int, mtime_s: float) -> str:
    return f"{size_bytes}:{mtime_s:.3f}"


def read(output: str) -> dict:
    """{file key: {"version", "model_id", "run_id", "status", "source"}} ({} before the
    first run)."""
    return read_state(output).get("files", {})


def read_state(output: str) -> dict:
    """The whole ledger: `files` (as `read`), `complete_run` (the run whose combined view
    was written before the ledger), `combined` ({file name: sha256} of that view) and
    `formats`; {} before the first run. Ledgers from before `complete_run` hold `files`
    alone."""
    path = fs.join(output, LEDGER_FILE)
    return fs.read_json(path) if outputs.exists(path) else {}


def pending(entries: dict, current: dict, model_id: str) -> list:
    """Keys whose version or model differ from the ledger's (sorted)."""
    return sorted(k for k, v in current.items()
                  if k not in entries or entries[k]["version"] != v
                  or entries[k]["model_id"] != model_id)


def write(output: str, entries: dict, complete_run: str = None, combined: dict = None,
          formats=None) -> None:
    """Replace the ledger atomically (os.replace locally; a gs:// object write is atomic)."""
    state = {"files": entries}
    if complete_run:
        state.update(complete_run=complete_run, combined=combined or {}, formats=list(formats or ()))
    outputs.atomic_write(fs.join(output, LEDGER_FILE),
                         (json.dumps(state, indent=2, sort_keys=True) + "\n").encode())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def combined_segments(output: str, entries: dict) -> list:
    """The segments (segments.csv of the run partitions) of each labeled file's latest run,
    sorted by file, then start, then label."""
    by_run = {}
    for key, entry in entries.items():
        if entry["status"] == "labeled":
            by_run.setdefault(entry["run_id"], set()).add(key)
    segments = []
    for run_id, keys in sorted(by_run.items()):
        text = fs.read_bytes(fs.join(output, RUNS_DIR, run_id, label_formats.SEGMENTS_CSV)).decode()
        segments += [s for s in label_formats.read_segments_csv(text) if s.file in keys]
    return sorted(segments, key=lambda s: (s.file, s.start_s, s.label))
