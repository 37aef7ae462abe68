"""`earmark embed --incremental`: the ledger (`pipelines/ledger.py`'s file and functions)
and what an incremental embeddings folder holds beside it.

Each run writes its partition, `runs/RUN_ID/` (its shards, `embed.json`, `sources.csv`,
`dead_letter.jsonl`). The run's last step then, in this order: removes from older
partitions' shards the rows of recordings this run embedded again or that left the corpus
(`drop_rows`: each such shard is rewritten whole, atomically, without them); replaces the
ledger (atomically: per recording its version, embedding id, run, status, window count);
removes partitions no ledger entry names; and writes the combined view at the top,
`embed.json` (every current shard, counts over the whole folder) and `sources.csv`, from
the ledger alone. A run killed anywhere leaves an older ledger in charge: the next run
removes the partitions it does not name, rewrites the combined view from it, and embeds
what is pending (a recording whose rows were dropped before the kill is pending again: its
version changed, or it is gone). Readers read the shards `embed.json` lists.
"""
import json
import logging

from earmark.pipelines import embeddings_io, fs, ledger, outputs
from earmark.pipelines.embeddings_io import EMBED_FILE

log = logging.getLogger("earmark.embed")

RUNS_DIR = ledger.RUNS_DIR
LEDGER_FILE = ledger.LEDGER_FILE


def continues(manifest, present) -> bool:
    """An incremental embed run carries on a folder of earlier incremental embed runs only."""
    if manifest is not None:
        return manifest.get("command") == "embed" and bool(manifest.get("incremental"))
    return False


def partition(run_id: str) -> str:
    return f"{RUNS_DIR}/{run_id}"


def _partition_summary(output, run_id) -> dict:
    path = fs.join(output, RUNS_DIR, run_id, EMBED_FILE)
    return fs.read_json(path) if outputs.exists(path) else {}


def drop_rows(output: str, stale: dict) -> None:
    """{run_id: keys}: rewrite the shards of those partitions that hold the keys' rows
    without them (a partition none of whose recordings stay is left whole: it is removed
    once the ledger no longer names it)."""
    for run_id, keys in sorted(stale.items()):
        summary = _partition_summary(output, run_id)
        shards = summary.get("shards", [])
        if not shards:
            continue
        count = len(shards)
        touched = sorted({embeddings_io.shard_of(k, count) for k in keys})
        for index in touched:
            path = fs.join(output, RUNS_DIR, run_id, embeddings_io.shard_name(index, count))
            if outputs.exists(path):
                _rewrite_without(path, set(keys))


def _rewrite_without(path: str, keys: set) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    facts = embeddings_io.shard_facts(path)
    dim, labels = facts["embedding_dim"], facts.get("labels", [])
    if not any(set(b.table.column("file").to_pylist()) & keys
               for b in embeddings_io.blocks(path, ["file"])):
        return

    def kept():
        for block in embeddings_io.blocks(path):
            mask = pc.invert(pc.is_in(block.table.column("file"), pa.array(sorted(keys))))
            index = [i for i, m in enumerate(mask.to_pylist()) if m]
            if not index:
                continue
            rows = block.rows(index)
            yield ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                   block.embedding[index], None if block.scores is None else block.scores[index])
    rows = list(kept())   # read whole before the shard is replaced
    extra = {k: v for k, v in facts.items() if k not in ("embedding_dim", "labels")}
    embeddings_io.write_shard(path, rows, dim, labels, extra)


def finish(output: str, inc: dict, embedded: dict, failed: set, run_summary: dict) -> None:
    """The end of an incremental run (the partition already written): drop superseded
    rows, replace the ledger, remove partitions it no longer names, write the combined
    view. `embedded`: {key: facts (windows, duration_s)} of this run's recordings that
    succeeded; `failed`: the keys that failed."""
    state = ledger.read_state(output)
    entries = dict(state.get("files", {}))
    missing = set(inc.get("missing", ())) & set(entries)
    stale = {}
    for key in set(inc["todo"]) | missing:
        old = entries.get(key)
        if old and old.get("status") == "embedded" and old["run_id"] != inc["run_id"]:
            stale.setdefault(old["run_id"], set()).add(key)
    staying = {}
    for key, e in entries.items():
        if e.get("status") == "embedded" and key not in inc["todo"] and key not in missing:
            staying.setdefault(e["run_id"], set()).add(key)
    drop_rows(output, {r: keys for r, keys in stale.items() if r in staying})
    ledger.pause_for_test("cleanup")
    for key in inc["todo"]:
        facts = embedded.get(key, {})
        entries[key] = {"version": inc["versions"][key], "model_id": inc["model_id"],
                        "run_id": inc["run_id"],
                        "status": "embedded" if key in embedded else "failed",
                        "source": inc["sources"][key], "windows": int(facts.get("windows", 0)),
                        "duration_s": float(facts.get("duration_s", 0.0)),
                        **({"name": inc["names"][key]} if key in inc.get("names", {}) else {})}
    for key in missing:
        del entries[key]
    ledger.write(output, entries, inc["run_id"], {}, [])
    ledger.pause_for_test("ledger")
    remove_unnamed_partitions(output, {"files": entries, "complete_run": inc["run_id"]})
    write_combined(output, {"files": entries, "complete_run": inc["run_id"]}, run_summary)


def remove_unnamed_partitions(output: str, state: dict) -> list:
    """Partitions under runs/ that no ledger entry names (and that are not the last complete
    run's): what killed runs and superseded runs leave. → the folders removed."""
    keep = {e["run_id"] for e in state.get("files", {}).values()} | {state.get("complete_run")}
    root = fs.join(output, RUNS_DIR)
    present = sorted({rel.split("/")[0] for rel in outputs.list_files(root)})
    gone = [f"{RUNS_DIR}/{r}" for r in present if r not in keep]
    for folder in gone:
        log.info("embed: removing %s (no recording of the ledger is embedded there)", folder)
        outputs.remove_folder(output, folder)
    return gone


def combined_files(output: str, state: dict, run_summary: dict = None) -> dict:
    """{name: bytes} of the combined view (embed.json, sources.csv) from the ledger."""
    entries = state.get("files", {})
    embedded = {k: e for k, e in entries.items() if e.get("status") == "embedded"}
    runs = sorted({e["run_id"] for e in embedded.values()})
    shards = []
    for run_id in runs:
        part = _partition_summary(output, run_id)
        shards += [f"{RUNS_DIR}/{run_id}/{s}" for s in part.get("shards", [])]
    last = run_summary or _partition_summary(output, state.get("complete_run") or "") or {}
    summary = {k: v for k, v in last.items() if k not in (
        "shards", "files_embedded", "files_failed", "failures_by_reason", "windows",
        "audio_hours", "wall_s", "audio_hours_per_wall_hour")}
    summary.update({
        "incremental": True, "complete_run": state.get("complete_run"), "shards": shards,
        "files_embedded": len(embedded),
        "files_failed": sum(1 for e in entries.values() if e.get("status") == "failed"),
        "windows": sum(int(e.get("windows", 0)) for e in embedded.values()),
        "audio_hours": round(sum(float(e.get("duration_s", 0)) for e in embedded.values()) / 3600, 6),
        "last_run": {k: last.get(k) for k in ("run_id", "files_matched", "files_new_or_changed",
                                              "files_embedded", "files_failed", "windows",
                                              "wall_s", "files_removed") if k in last}})
    sources = outputs.sources_csv((ledger.output_name(k, e), e.get("source", k))
                                  for k, e in embedded.items())
    return {EMBED_FILE: (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode(),
            outputs.SOURCES_FILE: sources}


def write_combined(output: str, state: dict, run_summary: dict = None) -> None:
    for name, data in combined_files(output, state, run_summary).items():
        outputs.atomic_write(fs.join(output, name), data)


def repair(output: str, state: dict) -> None:
    """At the start of an incremental run: partitions the ledger does not name go, and the
    combined view is rewritten from the ledger when it differs."""
    if not state.get("files"):
        return
    remove_unnamed_partitions(output, state)
    for name, data in combined_files(output, state).items():
        path = fs.join(output, name)
        if not outputs.exists(path) or fs.read_bytes(path) != data:
            log.info("embed: rewriting %s from the ledger (a run stopped before its end)", name)
            outputs.atomic_write(path, data)
