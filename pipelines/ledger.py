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
import logging
import os

from earmark.pipelines import fs, label_formats, outputs
from earmark.pipelines.label_formats import RUN_FILE, SEGMENTS_CSV, SEGMENTS_JSONL

log = logging.getLogger("earmark.label")

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


# --- an incremental run, beside its ledger -----------------------------------------------

def continues_incremental(manifest, present) -> bool:
    """An incremental run carries on a folder of earlier incremental label runs (one from
    before earmark_outputs.json: its ledger.json), and nothing else."""
    if manifest is not None:
        return manifest.get("command") == "label" and bool(manifest.get("incremental"))
    return LEDGER_FILE in present


# Test hook, read by `pause_for_test` (label's FinishRun, `finish_incremental`) and nowhere
# else, set only by tests/test_outputs.py: with
# EARMARK_TEST_PAUSE_AFTER=<stage> the process kills itself (SIGKILL) right after that stage
# of an incremental run's last step, exactly where a crash or a preempted worker could stop
# it. Stages, in order: partition (runs/RUN_ID/run.json written), segments_csv (the combined
# segments.csv rewritten, the rest of the combined view not yet), combined (the whole
# combined view written), ledger (ledger.json replaced). Unset, it does nothing.
TEST_PAUSE_ENV = "EARMARK_TEST_PAUSE_AFTER"


def pause_for_test(stage: str) -> None:
    if os.environ.get(TEST_PAUSE_ENV) == stage:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def output_name(key: str, entry: dict) -> str:
    """The name a ledger entry's per-recording files carry (`outputs.unique_names`)."""
    return entry.get("name") or outputs.recording_name(key, entry.get("source", key))


def _remove_per_recording(output, entries: dict, keys) -> None:
    """Delete the per-recording files (every format, scores) of `keys`, by name."""
    stale = [rel for key in sorted(keys) for rel in label_formats.per_recording_files(
        output_name(key, entries[key]), label_formats.PER_RECORDING, True).values()]
    outputs.delete(output, [rel for rel in stale if outputs.exists(fs.join(output, rel))])


def finish_incremental(output, inc, failed):
    """Record this run's files in the ledger (`failed`: their keys that failed): first the
    combined view from each file's latest run, then the ledger, atomically, naming this run
    and the digest of each combined file. Killed anywhere before the ledger is replaced, the
    old ledger still describes the folder (and the next run rebuilds a half-written view).
    Recordings gone from the corpus (`inc["missing"]`) leave the ledger, the combined view
    and their per-recording files."""
    entries = read(output)
    for key in inc["todo"]:
        entries[key] = {"version": inc["versions"][key], "model_id": inc["model_id"],
                        "run_id": inc["run_id"], "status": "failed" if key in failed else "labeled",
                        "source": inc["sources"][key],
                        **({"name": inc["names"][key]} if key in inc.get("names", {}) else {})}
    # a recording that failed this time keeps no per-recording files of an older version;
    # one gone from the corpus keeps none at all
    missing = set(inc.get("missing", ())) & set(entries)
    _remove_per_recording(output, entries, (set(inc["todo"]) & failed) | missing)
    for key in missing:
        del entries[key]
    combined = combined_files(output, entries, inc["formats"], inc["run_id"])
    write_combined(output, combined,
                   after_each=lambda name: name == SEGMENTS_CSV and pause_for_test("segments_csv"))
    pause_for_test("combined")
    write(output, entries, inc["run_id"],
          {name: digest(data) for name, data in combined.items()}, inc["formats"])
    pause_for_test("ledger")


def combined_files(output, entries, formats, run_id) -> dict:
    """The combined view at the top of an incremental output, from the ledger's entries and
    the run partitions: {name: bytes} of segments.csv / segments.jsonl (as `formats` asks),
    sources.csv and run.json (the summary of run `run_id`; None: left out)."""
    files = label_formats.tables(combined_segments(output, entries), formats)
    files[outputs.SOURCES_FILE] = outputs.sources_csv(
        (output_name(k, e), e.get("source", k))
        for k, e in entries.items() if e["status"] == "labeled")
    if run_id:
        files[RUN_FILE] = fs.read_bytes(fs.join(output, RUNS_DIR, run_id, RUN_FILE))
    return files


def write_combined(output, files: dict, after_each=None, drop_others=True) -> None:
    """Write the combined view; a combined table of a format this view leaves out is
    removed (it would describe an older state) unless `drop_others` is False."""
    for name in (SEGMENTS_CSV, SEGMENTS_JSONL, outputs.SOURCES_FILE, RUN_FILE):
        if name in files:
            fs.write_bytes(fs.join(output, name), files[name])
            if after_each:
                after_each(name)
        elif (drop_others and name in (SEGMENTS_CSV, SEGMENTS_JSONL)
              and outputs.exists(fs.join(output, name))):
            outputs.delete(output, [name])


def repair_combined(output, state: dict, formats) -> None:
    """At the start of an incremental run: the combined view must be the one the ledger
    names (a run killed after writing part of it, before its ledger, leaves it otherwise);
    when a file is missing or differs, rebuild the view from `runs/` as the ledger says.
    A ledger from before `complete_run` names no digests: its view is rebuilt."""
    entries = state.get("files")
    if not entries:
        return
    want = state.get("combined")
    if want is not None:
        bad = sorted(n for n, d in want.items()
                     if not outputs.exists(fs.join(output, n))
                     or digest(fs.read_bytes(fs.join(output, n))) != d)
        if not bad:
            return
        log.info("label: %s not as run %s left them (a run stopped before its end); rebuilding "
                 "from %s/", ", ".join(bad), state.get("complete_run"), RUNS_DIR)
        formats = state.get("formats", formats)
    write_combined(output, combined_files(output, entries, formats, state.get("complete_run")),
                   drop_others=want is not None)


def missing(entries: dict, current) -> list:
    """Keys the ledger holds that the corpus no longer does (sorted)."""
    return sorted(set(entries) - set(current))


def forget_missing(output, state: dict, keys, formats) -> None:
    """Without a run (nothing new to label): recordings gone from the corpus leave the
    per-recording files, the combined view and the ledger, in that order (killed in
    between, the next run finds them missing again)."""
    entries = dict(state.get("files", {}))
    _remove_per_recording(output, entries, keys)
    for key in keys:
        del entries[key]
    complete_run = state.get("complete_run")
    combined = combined_files(output, entries, formats, complete_run)
    write_combined(output, combined)
    write(output, entries, complete_run, {name: digest(data) for name, data in combined.items()},
          formats)


def remove_orphan_runs(output, state: dict, manifest: dict = None) -> list:
    """Run partitions the output manifest lists and the ledger does not name are what
    killed runs left: removed, so the folder holds what uninterrupted runs write. (One
    output takes one run at a time.) A folder under runs/ that no earmark run made stays.
    → the folders removed."""
    keep = {e["run_id"] for e in state.get("files", {}).values()} | {state.get("complete_run")}
    listed = [f for f in (manifest or {}).get("folders", ())
              if f.startswith(RUNS_DIR + "/") and f.split("/")[1] not in keep]
    for folder in listed:
        log.info("label: removing %s, left by a run that did not finish", folder)
        outputs.remove_folder(output, folder)
    return listed
