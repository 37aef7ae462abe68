"""`earmark embed`: every window of a corpus → its embedding, as sharded Parquet.

    ListRecordings → ReadWindows (label's steps: the same listing, chunks and decoding)
      → Embed (label's Score step with embeddings: RunInference of `model.embedding`, the
        model's base vector and scores, or a base alone) → CheckRecordings (every window
        embedded, else a dead letter) → WriteEmbeddings (spill, group per shard, write
        each shard sorted by file then start: `pipelines/embed_steps.py`) → FinishRun

Outputs in `--output`: `embeddings-SSSSS-of-NNNNN.parquet` (`pipelines/embeddings_io.py`),
`embed.json` (base, dimensions, window, hop, model id, labels, counts, shards),
`sources.csv`, `dead_letter.jsonl`, `earmark_outputs.json`; with `--incremental`, each
run's shards in `runs/RUN_ID/` and `ledger.json` (`pipelines/embed_ledger.py`).
"""
import dataclasses
import json
import logging
import os
import time
import uuid

import apache_beam as beam

from earmark.model import data_files, precision
from earmark.model.errors import UserError
from earmark.pipelines import corpus, embed_ledger, embeddings_io, fs, ledger, local_runner, outputs, sinks
from earmark.pipelines.embed_flags import build_arg_parser
from earmark.pipelines.embed_steps import CheckRecordings, WriteEmbeddings, spill_folder
from earmark.pipelines.label_formats import DEAD_LETTER_FILE
from earmark.pipelines.label_steps import DEAD_LETTER, ReadWindows, Score

log = logging.getLogger("earmark.embed")


@dataclasses.dataclass
class Embedding:
    """What a run embeds with, as the launcher resolved it (no model loaded): the source
    for `EmbeddingModelHandler`, the windows (FeatureConfig), a model.json-like `meta` for
    the batch size, and what embed.json records."""
    source: dict
    config: object            # FeatureConfig with the run's hop
    meta: dict
    base: str
    dim: int
    labels: list
    model_id: str             # "" for a base alone
    embedding_id: str         # what the ledger keys a recording's rows by
    precision: dict

    def facts(self) -> dict:
        """embed.json's description of the vectors (also in every shard's metadata)."""
        c = self.config
        return {"base": self.base, "embedding_dim": self.dim, "labels": list(self.labels),
                "model_id": self.model_id, "sample_rate_hz": c.sample_rate_hz,
                "window_samples": c.patch_samples,
                "window_s": round(c.patch_samples / c.sample_rate_hz, 6),
                "hop_s": c.patch_hop_seconds, "feature_config": c.to_dict(),
                "embedding_id": self.embedding_id}


def model_embedding(model_dir: str, meta: dict, config, numeric_precision: dict) -> Embedding:
    """The `Embedding` of a trained model (model.json `meta`, validated) at `config`'s hop:
    `earmark embed --model` and `earmark label --formats embeddings` alike."""
    base = meta.get("base", {})
    dim = int(base.get("feature_dim") or base.get("embedding_dim") or 0)
    if not dim:
        raise UserError(f"--model {model_dir}: model.json names no feature_dim for its base; "
                        "re-run 'earmark train'")
    return Embedding({"model": model_dir}, config, meta, base.get("name", ""), dim,
                     list(meta["labels"]), meta["model_id"],
                     f"{meta['model_id']}@{config.patch_hop_seconds:g}", numeric_precision)


def resolve(args) -> Embedding:
    """--model or --base → `Embedding`, every check done before --output is touched."""
    from earmark.pipelines import label
    if args.model:
        model_dir = fs.absolute(args.model)
        meta = label._model_meta(model_dir)
        config = label.labeling_config(meta, args.hop_seconds)
        if precision.resolve(args.precision) == "int8":
            raise UserError("--precision int8 serves a model's 8-bit scores only, not its "
                            "embeddings; use --precision auto or float32")
        try:
            here = precision.effective(args.precision, meta, scores_only=False)
        except ValueError as e:
            raise UserError(f"--precision {args.precision}: {e}; use --precision auto or float32") from None
        return model_embedding(model_dir, meta, config, {"requested": args.precision, "here": here})
    from earmark.model import embedding
    from earmark.model.features import embedding_base_config
    spec = embedding.base_spec(args.base)
    if args.hop_seconds is not None:
        window_s = spec.window_samples / spec.sample_rate_hz
        steps = round(args.hop_seconds * spec.sample_rate_hz)
        if not (0.01 - 1e-9 <= args.hop_seconds <= window_s + 1e-9
                and abs(steps / spec.sample_rate_hz - args.hop_seconds) <= 1e-6):
            raise UserError(f"--hop-seconds {args.hop_seconds:g}: {spec.name}'s windows "
                            f"({window_s:g} s at {spec.sample_rate_hz} Hz) can move by whole "
                            f"samples, from 0.01 s up to {window_s:g} s, e.g. {window_s / 2:g}")
    config = embedding_base_config(spec, args.hop_seconds)
    meta = {"base": {**spec.to_dict(), "kind": spec.kind}, "feature_config": config.to_dict()}
    if precision.resolve(args.precision) not in ("float32",) and args.precision != "auto":
        raise UserError(f"--precision {args.precision}: {spec.name} runs as it ships "
                        "(float32); use --precision auto or float32")
    return Embedding({"base": spec.name}, config, meta, spec.name, int(spec.embedding_dim), [],
                     "", f"base:{spec.name}@{config.patch_hop_seconds:g}",
                     {"requested": args.precision, "here": "float32"})


def _count_run(_, recordings, dead) -> dict:
    reasons = {}
    for d in dead:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    return {"files_embedded": len(recordings), "files_failed": len(dead),
            "failures_by_reason": dict(sorted(reasons.items())),
            "windows": sum(int(f["windows"]) for _, f in recordings),
            "audio_hours": round(sum(f["duration_s"] for _, f in recordings) / 3600, 6)}


def _write_sources(_, recordings, folder, names) -> list:
    data = outputs.sources_csv((names.get(k) or outputs.recording_name(k, f["path"]), f["path"])
                               for k, f in recordings)
    fs.write_bytes(fs.join(folder, outputs.SOURCES_FILE), data)
    return [outputs.SOURCES_FILE]


def build_pipeline(p, source, output, folder, emb: Embedding, batch_size, embedder_batch_size,
                   chunk_seconds, shards, finish):
    """ListRecordings → ReadWindows → Embed → CheckRecordings → WriteEmbeddings (shards
    under `folder`: the output, or an incremental run's partition) → FinishRun."""
    from earmark.pipelines.label import ListRecordings
    progress_id = uuid.uuid4().hex
    config = emb.config
    recordings = p | "ListRecordings" >> ListRecordings(source)
    read = recordings | "ReadWindows" >> ReadWindows(config, chunk_seconds, progress_id,
                                                     fs.single_process(p.options), prog="embed")
    embedded = read["windows"] | "Embed" >> Score(
        None, batch_size, progress_id, emb.precision["requested"], embedder_batch_size,
        embeddings=emb.source, prog="embed")
    checked = ({"info": read["info"], "rows": embedded["rows"], "chunk_failed": read["chunk_failed"],
                "inference_failed": embedded["failed"]} | "CheckRecordings" >> CheckRecordings())
    good = checked["recordings"]
    written = ({"rows": embedded["rows"], "recordings": good}
               | "WriteEmbeddings" >> WriteEmbeddings(
                   folder, output, finish.run_id, shards, emb.dim, emb.labels,
                   config.patch_hop_seconds, config.patch_samples / config.sample_rate_hz,
                   emb.facts()))
    dead = (read[DEAD_LETTER], checked[DEAD_LETTER]) | "AllDeadLetters" >> beam.Flatten()
    trigger = p | "Once" >> beam.Create([None])
    sources = trigger | "WriteSources" >> beam.Map(_write_sources, beam.pvalue.AsList(good),
                                                   folder, finish.names)
    counts = trigger | "CountRun" >> beam.Map(_count_run, beam.pvalue.AsList(good),
                                              beam.pvalue.AsList(dead))
    dead_written = (dead | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
                    | "WriteDeadLetter" >> sinks.write_text(
                        fs.join(folder, data_files.stem(DEAD_LETTER_FILE)), output, finish.run_id,
                        file_name_suffix=".jsonl", num_shards=1, shard_name_template=""))
    _ = trigger | "FinishRun" >> beam.Map(
        finish, beam.pvalue.AsSingleton(counts), beam.pvalue.AsList(dead), beam.pvalue.AsList(good),
        beam.pvalue.AsList(written), beam.pvalue.AsList(sources), beam.pvalue.AsList(dead_written))


@dataclasses.dataclass
class FinishRun:
    """The run's last step, inside the pipeline (a Dataflow job finishes its own run):
    embed.json (the run's, or with --incremental its partition's, then the ledger's
    bookkeeping and the combined view), the spill folder removed, and last the output
    manifest."""
    output: str
    folder: str               # where the shards went: the output, or runs/RUN_ID
    summary: dict
    started_unix_s: float
    incremental: dict = None
    run_id: str = ""
    files: tuple = ()
    names: dict = dataclasses.field(default_factory=dict)
    shards: tuple = ()        # the shard names (relative to `folder`)

    def __call__(self, _, counts, dead, recordings, written, *more):
        wall_s = time.time() - self.started_unix_s
        summary = {**self.summary, **counts, "shards": list(self.shards), "run_id": self.run_id,
                   "wall_s": round(wall_s, 2),
                   "audio_hours_per_wall_hour": round(counts["audio_hours"] * 3600 / wall_s, 1)
                   if wall_s > 0 else None}
        outputs.remove_folder(self.output, outputs.relative(
            self.output, fs.join(self.folder, spill_folder(self.run_id))))
        inc = self.incremental
        if inc:
            summary.update(files_new_or_changed=len(inc["todo"]))
            fs.write_json(fs.join(self.folder, embeddings_io.EMBED_FILE), summary)
            ledger.pause_for_test("partition")
            embed_ledger.finish(self.output, inc, dict(recordings), {d["file"] for d in dead},
                                summary)
        else:
            fs.write_json(fs.join(self.output, embeddings_io.EMBED_FILE), summary)
        outputs.finish(self.output, "embed", self.run_id, list(self.files), incremental=bool(inc))


def run(argv=None, save_main_session=True, test_pipeline=None):
    from earmark.pipelines import label
    args, beam_args = build_arg_parser().parse_known_args(argv)
    fs.check_beam_flags(beam_args, "earmark embed")
    options = fs.pipeline_options(beam_args, save_main_session)
    corpus.ManifestColumns.from_args(args)
    emb = resolve(args)
    batch_size, embedder_batch_size = label._batch_sizes(emb.meta, args.memory_budget,
                                                         args.batch_size)
    output = fs.absolute(args.output)
    if args.input:
        corpus.check_output_outside(corpus.input_source(fs.absolute(args.input)), output)
    if args.keep_missing and not args.incremental:
        raise UserError("--keep-missing keeps an incremental folder's recordings that left the "
                        "corpus; add --incremental, or drop --keep-missing")
    source, listed, versions = label._list_source(args, with_versions=args.incremental)
    files_matched = len(listed)
    names = outputs.unique_names([(r.key, r.path) for r in listed], lambda name: [name])
    log.info("embed: %d files matched; %s (%d dimensions%s)", files_matched, emb.base, emb.dim,
             f", model {emb.model_id}" if emb.model_id else "")
    fs.check_writable_output(output)
    template = fs.builds_template(options)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    previous = None if template else outputs.claim(
        output, "embed", args.overwrite, continues=embed_ledger.continues if args.incremental else None)
    folder, todo, gone, inc = output, None, [], None
    if args.incremental:
        state = ledger.read_state(output)
        if not template:
            embed_ledger.repair(output, state)
            previous = _without_removed_partitions(output, previous)
        todo = set(ledger.pending(state.get("files", {}), versions, emb.embedding_id))
        gone = [] if args.keep_missing else ledger.missing(state.get("files", {}), versions)
        if not todo and not template:
            if previous and not previous.get("complete", True):
                outputs.finish(output, "embed", previous.get("run_id", run_id),
                               previous.get("files", ()), incremental=True, previous=previous)
            if gone:
                _forget(output, state, gone)
                print(f"nothing new; {len(gone)} recordings no longer in the corpus removed "
                      "from the embeddings (--keep-missing keeps them)")
                return None
            print(f"nothing new: all {files_matched} files are already embedded "
                  f"({emb.embedding_id}); nothing to do")
            return None
        source = [r for r in source if r.key in todo]
        folder = fs.join(output, embed_ledger.partition(run_id))
        inc = {"run_id": run_id, "versions": {k: versions[k] for k in todo}, "todo": sorted(todo),
               "model_id": emb.embedding_id, "sources": {r.key: r.path for r in source},
               "names": {k: v for k, v in names.items() if k in todo}, "missing": gone}
        log.info("embed: incremental run %s: %d new or changed of %d files", run_id, len(todo),
                 files_matched)
    shards = args.shards or embeddings_io.default_shards(len(todo) if todo is not None else files_matched)
    shard_files = embeddings_io.shard_names(shards)
    prefix = "" if folder == output else embed_ledger.partition(run_id) + "/"
    run_files = [embeddings_io.EMBED_FILE, outputs.SOURCES_FILE, DEAD_LETTER_FILE] + shard_files
    files = [prefix + f for f in run_files]
    temp = [prefix + spill_folder(run_id)] + sinks.temp_folders(
        output, [fs.join(folder, data_files.stem(DEAD_LETTER_FILE))], run_id)
    folders = list(temp)
    if inc:
        files += [embeddings_io.EMBED_FILE, outputs.SOURCES_FILE, ledger.LEDGER_FILE]
        folders.append(embed_ledger.partition(run_id))
    if not template:
        outputs.begin(output, "embed", run_id, files, folders, args.incremental, previous)
    fs.makedirs(folder)
    summary = {"command": "embed", **emb.facts(),
               "model": fs.absolute(args.model) if args.model else None, "columns": [
        c for c in embeddings_io.COLUMNS if c != "scores" or emb.labels],
        "numeric_precision": emb.precision,
        "input": fs.absolute(args.input) if args.input else None,
        "manifest": fs.absolute(args.manifest) if args.manifest else None,
        "files_matched": files_matched, "batch_size": batch_size,
        "memory_budget_bytes": args.memory_budget}
    if embedder_batch_size:
        summary["embedder_batch_size"] = embedder_batch_size
    if inc:
        summary["files_removed"] = len(gone)
    finish = FinishRun(output, folder, summary, time.time(), inc, run_id, files, names, shard_files)
    p = test_pipeline or local_runner.new_pipeline(options)
    build_pipeline(p, source, output, folder, emb, batch_size, embedder_batch_size,
                   args.chunk_seconds, shards, finish)
    return outputs.run_pipeline(p, options, output, temp)


def _without_removed_partitions(output, previous):
    """The manifest to continue, less the partitions `embed_ledger.repair` removed."""
    if not previous:
        return previous
    present = {rel.split("/")[0] for rel in outputs.list_files(fs.join(output, embed_ledger.RUNS_DIR))}
    keep = [f for f in previous.get("folders", ()) if not f.startswith(embed_ledger.RUNS_DIR + "/")
            or f.split("/")[1] in present]
    gone = tuple(f + "/" for f in previous.get("folders", ()) if f not in keep)
    return dict(previous, folders=keep,
                files=[f for f in previous.get("files", ()) if not f.startswith(gone)])


def _forget(output, state, gone) -> None:
    """No run: recordings gone from the corpus leave the shards, then the ledger."""
    entries = dict(state.get("files", {}))
    stale, staying = {}, {}
    for key, e in entries.items():
        if e.get("status") == "embedded":
            (stale if key in gone else staying).setdefault(e["run_id"], set()).add(key)
    embed_ledger.drop_rows(output, {r: k for r, k in stale.items() if r in staying})
    for key in gone:
        entries.pop(key, None)
    new_state = {"files": entries, "complete_run": state.get("complete_run")}
    ledger.write(output, entries, state.get("complete_run"), {}, [])
    embed_ledger.remove_unnamed_partitions(output, new_state)
    embed_ledger.write_combined(output, new_state)


def main(argv=None) -> dict:
    args, beam_args = build_arg_parser().parse_known_args(argv)
    if run(argv) is None:
        return {}
    if fs.builds_template(beam_args):
        print(f"Dataflow template written; outputs will go to {args.output} when it runs")
        return {}
    output = fs.absolute(args.output)
    stats = fs.read_json(fs.join(output, embeddings_io.EMBED_FILE))
    run_stats = stats.get("last_run", stats)
    new = run_stats.get("files_new_or_changed")
    print(f"files: {stats['files_matched']} matched, "
          + ("" if new is None else f"{new} new or changed, ")
          + f"{run_stats['files_embedded']} embedded, {run_stats['files_failed']} failed "
          f"{stats.get('failures_by_reason') or ''}".rstrip())
    print(f"windows: {run_stats['windows']:,} of {stats['embedding_dim']} dimensions "
          f"({stats['base']}{', model ' + stats['model_id'] if stats['model_id'] else ''}), "
          f"{len(stats['shards'])} shards")
    print(f"outputs: {output}")
    if run_stats["files_embedded"] == 0 and run_stats["files_failed"]:
        n = run_stats["files_failed"]
        raise UserError(("the one file failed" if n == 1 else f"all {n} files failed")
                        + f"; see {fs.join(output, DEAD_LETTER_FILE)}")
    return stats
