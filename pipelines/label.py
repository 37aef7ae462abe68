"""`earmark label`: a trained model over a corpus → labeled time segments.

    ListRecordings (folder, glob or manifest) → ReadWindows (Reshuffle, PlanChunks from the
      header only, Reshuffle, DecodeChunks) → Score (RunInference keyed by file, window)
      → MakeSegments (group per recording; thresholds, smoothing, merging) → WriteSegments

(the steps: `pipelines/label_steps.py`; the incremental ledger: `pipelines/ledger.py`.)

Outputs in `--output`: `segments.csv` (one table sorted by file then start, byte-stable
whatever the worker count), per-recording Raven selection tables (`raven/`) and Audacity
label tracks (`audacity/`), `segments.jsonl`, optional per-window `scores/`, `run.json`
and `dead_letter.jsonl`.
"""
import dataclasses
import json
import logging
import os
import time
import uuid

import apache_beam as beam

from earmark.model import data_files, model_files, precision
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig
from earmark.model.segments import PostProcessing, WindowGrid, model_post_processing, written_labels
from earmark.pipelines import corpus, fs, label_formats, ledger, local_runner, outputs, sinks
from earmark.pipelines.label_flags import OVERRIDE_FLAGS, build_arg_parser
from earmark.pipelines.label_steps import DEAD_LETTER, MakeSegments, ReadWindows, Score
from earmark.pipelines.label_formats import (DEAD_LETTER_FILE, RUN_FILE, SEGMENTS_CSV,
                                             SEGMENTS_JSONL)

log = logging.getLogger("earmark.label")


def post_processing(meta: dict, args) -> tuple:
    """Per label: the `PostProcessing` label uses (None: a background label, not written
    unless --emit-background), and for run.json where each value came from: `model`
    (calibrated at train time), `flag`, or `default` (a model trained before calibration).
    The flags' values were checked as they were parsed (`label_flags.override`); their
    LABEL= names are checked here, against the model's labels, and so is a --low-threshold
    against the threshold it goes with (`reconcile_low_threshold`)."""
    labels = meta["labels"]
    resolved = model_post_processing(meta)
    settings = {l: resolved[l][0] for l in labels}
    sources = {l: resolved[l][1] for l in labels}
    for flag, (field, _) in OVERRIDE_FLAGS.items():
        for item in getattr(args, flag):
            if item.label and item.label not in labels:
                raise UserError(f"--{flag.replace('_', '-')} {item.text}: {item.label!r} is not "
                                f"a label of this model ({', '.join(labels)})")
            for label in labels:
                if not item.label or item.label == label:
                    settings[label][field], sources[label][field] = item.value, "flag"
    written = set(written_labels(meta, args.emit_background))
    for label in labels:
        reconcile_low_threshold(label, settings[label], sources[label], label in written)
    out = [PostProcessing.from_dict(settings[l]) if l in written else None for l in labels]
    return out, {l: {"settings": settings[l], "from": sources[l], "written": l in written}
                 for l in labels}


def reconcile_low_threshold(label: str, settings: dict, sources: dict, written: bool) -> None:
    """A low threshold above the threshold: a UserError where --low-threshold set it for a
    label that is written; else (the model's, and --threshold went below it; or a label not
    written) it becomes the threshold (no hysteresis), from the flag. In place."""
    if settings["low_threshold"] <= settings["threshold"]:
        return
    if sources["low_threshold"] == "flag" and written:
        raise UserError(f"--low-threshold {settings['low_threshold']:g} for {label}: it must be "
                        f"at most {label}'s threshold ({settings['threshold']:g}); lower it, "
                        f"or raise --threshold")
    settings["low_threshold"], sources["low_threshold"] = settings["threshold"], "flag"


def per_recording_files(name: str, formats, scores: bool) -> dict:
    """{format: path relative to the output} of one recording's per-recording files."""
    return label_formats.per_recording_files(name, formats, scores)


def _output_name(result, names) -> str:
    """A recording's output name: `outputs.recording_name`, or the launcher's fallback
    (`outputs.unique_names`) where that cannot be used."""
    return names.get(result["file"]) or outputs.recording_name(result["file"], result["path"])


def _write_per_file(result, output, formats, low_hz, high_hz, model_id, names):
    """Write one recording's Raven / Audacity / scores files (named in the output manifest
    when the run began) → their names (relative)."""
    segs = result["segments"]
    name = _output_name(result, names)
    files = per_recording_files(name, formats, result["scores"] is not None)
    for fmt, rel in files.items():
        data = label_formats.OUTPUT_FORMATS[fmt].write(segs, dict(result, low_hz=low_hz, high_hz=high_hz))
        fs.write_bytes(fs.join(output, *rel.split("/")), data.encode())
    return sorted(files.values())


def _write_tables(_, results, output, formats, model_id, names):
    """segments.csv / segments.jsonl (as `formats` asks) and sources.csv → names written."""
    results = sorted(results, key=lambda r: r["file"])
    segments = [dataclasses.replace(s, file=r["file"], model_id=model_id)
                for r in results for s in r["segments"]]
    written = {outputs.SOURCES_FILE: outputs.sources_csv(
        (_output_name(r, names), r["path"]) for r in results)}
    written.update(_tables(segments, formats))
    for name, data in written.items():
        fs.write_bytes(fs.join(output, name), data)
    return sorted(written)


def _tables(segments, formats) -> dict:
    """{name: bytes} of segments.csv / segments.jsonl of `segments`, as `formats` asks."""
    return label_formats.tables(segments, formats)


def _count_run(_, results, dead) -> dict:
    """What the run did: files labeled and failed (by reason), audio hours, segments per
    label; `FinishRun` adds the launcher's facts and the wall time."""
    per_label, reasons = {}, {}
    for r in results:
        for s in r["segments"]:
            per_label[s.label] = per_label.get(s.label, 0) + 1
    for d in dead:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    return {
        "files_labeled": len(results), "files_failed": len(dead),
        "failures_by_reason": dict(sorted(reasons.items())),
        "audio_hours": round(sum(r["duration_s"] for r in results) / 3600, 6),
        "segments_per_label": dict(sorted(per_label.items())),
    }


class ListRecordings(beam.PTransform):
    """A folder or glob (`corpus.Source`), listed on the workers, or manifest rows →
    `corpus.Recording`s."""

    def __init__(self, source):
        super().__init__()
        self._source = source

    def expand(self, pbegin):
        source = self._source
        if not isinstance(source, corpus.Source):
            return pbegin | "ManifestRows" >> beam.Create(source)
        return (pbegin | "Source" >> beam.Create([source])
                | "ListFiles" >> beam.FlatMap(corpus.list_paths)
                | "ToRecording" >> beam.Map(lambda path, root=source.root: corpus.Recording(
                    path, "", corpus.relative_key(path, root))))


class WriteSegments(beam.PTransform):
    """{"results", "unread", "unlabeled" (dead letters of ReadWindows, MakeSegments)} → the run's files: per-recording files under
    `output`; the tables, sources.csv and dead letter under `tables_dir`; last `finish` (a
    `FinishRun`), once every file is written."""

    def __init__(self, output, tables_dir, labels, model_id, config, formats, finish):
        # with --formats embeddings, pcolls also holds "embeddings": the shards written
        # (`embed_steps.WriteEmbeddings`) and "embedded": (file, facts) of the recordings
        # whose rows they hold; FinishRun waits for both and writes embeddings/embed.json
        super().__init__()
        self._output, self._tables_dir, self._labels, self._model_id = output, tables_dir, labels, model_id
        self._config, self._formats, self._finish = config, formats, finish

    def expand(self, pcolls):
        labels, config, formats, tables_dir = self._labels, self._config, self._formats, self._tables_dir
        p = pcolls["results"].pipeline
        dead = (pcolls["unread"], pcolls["unlabeled"]) | "AllDeadLetters" >> beam.Flatten()
        labeled = pcolls["results"] | "AddLabels" >> beam.Map(
            lambda r: {**r, "labels": labels, "hop_s": config.patch_hop_seconds})
        per_recording = labeled | "WritePerRecording" >> beam.Map(
            _write_per_file, self._output, formats, config.mel_min_hz, config.mel_max_hz, self._model_id,
            self._finish.names)
        summaries = labeled | "DropScores" >> beam.Map(lambda r: {**r, "scores": None})
        trigger = p | "Once" >> beam.Create([None])
        table_formats = formats if tables_dir == self._output else sorted(set(formats) | {"csv"})
        tables = trigger | "WriteTables" >> beam.Map(_write_tables, beam.pvalue.AsList(summaries),
                                                     tables_dir, table_formats, self._model_id,
                                                     self._finish.names)
        counts = trigger | "CountRun" >> beam.Map(_count_run, beam.pvalue.AsList(summaries),
                                                  beam.pvalue.AsList(dead))
        dead_written = (dead | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
                        | "WriteDeadLetter" >> sinks.write_text(
                            fs.join(tables_dir, data_files.stem(DEAD_LETTER_FILE)),
                            self._output, self._finish.run_id,
                            file_name_suffix=".jsonl", num_shards=1,
                            shard_name_template=""))
        embedded = ([beam.pvalue.AsList(pcolls["embeddings"]), beam.pvalue.AsList(pcolls["embedded"])]
                    if "embeddings" in pcolls else [])
        # side inputs: it runs once every write above is done
        return trigger | "FinishRun" >> beam.Map(
            self._finish, beam.pvalue.AsSingleton(counts), beam.pvalue.AsList(dead),
            beam.pvalue.AsList(per_recording), beam.pvalue.AsList(tables),
            beam.pvalue.AsList(dead_written), *embedded)


def build_pipeline(p, source, output, model_dir, meta, config, grid, post, formats,
                   keep_scores, chunk_seconds, batch_size, tables_dir, finish,
                   precision_name=precision.DEFAULT_PRECISION, embedder_batch_size=None,
                   embeddings=None):
    """Wire the label steps onto `p`: ListRecordings → ReadWindows → Score → MakeSegments →
    WriteSegments. Per-recording files go under `output`; the tables, sources.csv and dead
    letter under `tables_dir` (a run partition `runs/RUN_ID/` holds segments.csv whatever
    the formats: the combined view is rebuilt from it). `finish` (a `FinishRun`) runs last,
    once every file is written. `embeddings` (--formats embeddings: {"embedding":
    `embed.Embedding`, "shards": count}): Score computes each window's embedding with its
    scores, and `embed_steps.WriteEmbeddings` writes them under `embeddings/`, the rows
    `earmark embed --model` writes."""
    run_id = uuid.uuid4().hex  # one progress tracker per run and process
    recordings = p | "ListRecordings" >> ListRecordings(source)
    read = recordings | "ReadWindows" >> ReadWindows(config, chunk_seconds, run_id,
                                                     fs.single_process(p.options))
    emb = embeddings["embedding"] if embeddings else None
    scored = read["windows"] | "Score" >> Score(model_dir, batch_size, run_id, precision_name,
                                                embedder_batch_size,
                                                embeddings=emb.source if emb else None)
    made = ({"info": read["info"], "scores": scored["scores"], "chunk_failed": read["chunk_failed"],
             "inference_failed": scored["failed"]}
            | "MakeSegments" >> MakeSegments(meta["labels"], post, grid, keep_scores))
    written = {"results": made["results"], "unread": read[DEAD_LETTER], "unlabeled": made[DEAD_LETTER]}
    if emb:
        from earmark.pipelines import embeddings_io
        from earmark.pipelines.embed_steps import WriteEmbeddings
        embedded = made["results"] | "EmbeddedRecordings" >> beam.Map(
            lambda r: (r["file"], {"path": r["path"], "duration_s": r["duration_s"],
                                   "windows": r["windows"]}))
        c = emb.config
        written["embeddings"] = ({"rows": scored["rows"], "recordings": embedded}
                                 | "WriteEmbeddings" >> WriteEmbeddings(
                                     fs.join(output, embeddings_io.FOLDER), output, finish.run_id,
                                     embeddings["shards"], emb.dim, emb.labels, c.patch_hop_seconds,
                                     c.patch_samples / c.sample_rate_hz, emb.facts()))
        written["embedded"] = embedded
    _ = (written | "WriteSegments" >> WriteSegments(output, tables_dir, meta["labels"],
                                                    meta["model_id"], config, formats, finish))


def _model_meta(model_dir: str) -> dict:
    """model.json, validated, and the model's id; the serving file must be there and be a
    .keras archive, so a broken model dir is a one-line error before any worker starts."""
    meta = model_files.read_meta(lambda name: fs.read_bytes(fs.join(model_dir, name)), model_dir)
    serving = model_files.model_files(meta)[1]
    try:
        data = fs.read_bytes(fs.join(model_dir, serving))
    except Exception:
        raise UserError(f"--model {model_dir}: no {serving} there; re-run 'earmark train'") from None
    model_files.check_keras_archive(data, serving, model_dir)
    meta["model_id"] = model_files.model_id(meta, lambda name: data)
    return meta


def labeling_config(meta: dict, hop_s: float = None) -> FeatureConfig:
    """The model's FeatureConfig (its windows' rate and length) with the labeling hop:
    `hop_s` (--hop-seconds) or the model's default. A hop the model's windows cannot move
    by is a one-line UserError: it must be a whole number of steps (a log-mel frame, 10 ms;
    a sample for an embedding base), at least 10 ms (one frame), and at most a window (a
    longer hop would leave audio unscored)."""
    _, _, default_hop_s = model_files.window_spec(meta)
    config = FeatureConfig.from_dict(meta["feature_config"])
    if hop_s is None:
        return config.with_patch_hop(default_hop_s)
    rate = config.sample_rate_hz
    step = 1 / rate if config.is_waveform else config.hop_seconds
    window_s = config.patch_samples / rate
    steps = round(hop_s / step)
    if not (config.hop_seconds - 1e-9 <= hop_s <= window_s + 1e-9
            and abs(steps * step - hop_s) <= 1e-6):
        good = f"a multiple of {step:g} s" if not config.is_waveform else "whole samples"
        raise UserError(f"--hop-seconds {hop_s:g}: this model's windows ({window_s:g} s at "
                        f"{rate} Hz) can move by {good}, from {config.hop_seconds:g} s up "
                        f"to {window_s:g} s, e.g. {default_hop_s:g} (its default)")
    return config.with_patch_hop(hop_s)


def _list_source(args, with_versions=False):
    """→ (source for build_pipeline, the recordings listed, {key: version} or None). A
    folder or glob is listed again on the workers (`ListRecordings`); the launcher's list
    names the outputs and counts the files."""
    if args.manifest:
        manifest = fs.absolute(args.manifest)
        recs, duplicates = corpus.unique_recordings(corpus.read_manifest(
            manifest, require_label=False, columns=corpus.ManifestColumns.from_args(args),
            audio_root=args.audio_root))
        if duplicates:
            log.info("label: %d manifest rows name a file listed before; each file counts once",
                     duplicates)
        versions = {r.key: _version(fs.stat_entry(r.path)) for r in recs} if with_versions else None
        return recs, recs, versions
    input_path = fs.absolute(args.input)
    paths, source = corpus.list_audio(input_path)
    if not with_versions:
        return source, [corpus.Recording(p, "", corpus.relative_key(p, source.root))
                        for p in paths], None
    entries = ([fs.stat_entry(p) for p in paths] if source.kind != "folder"
               else fs.list_files(source.spec))
    recs = sorted((corpus.Recording(e.path, "", corpus.relative_key(e.path, source.root))
                   for e in entries), key=lambda r: r.key)
    versions = {corpus.relative_key(e.path, source.root): _version(e) for e in entries}
    return recs, recs, versions


def _version(entry: fs.FileEntry) -> str:
    """A recording's version for the ledger; one that cannot be read is its problem, so it
    is tried again once it changes."""
    if entry.problem:
        return f"{entry.problem}:{entry.detail}"
    return ledger.version(entry.size_bytes, entry.updated_s)


def run(argv=None, save_main_session=True, test_pipeline=None):
    args, beam_args = build_arg_parser().parse_known_args(argv)
    fs.check_beam_flags(beam_args, "earmark label")
    options = fs.pipeline_options(beam_args, save_main_session)
    formats = args.formats  # checked as parsed, like every number (label_flags)
    corpus.ManifestColumns.from_args(args)  # --path-column, --audio-root: only with --manifest

    # every check of the model and of the flags against it, before --output is touched
    model_dir = fs.absolute(args.model)
    meta = _model_meta(model_dir)
    config = labeling_config(meta, args.hop_seconds)
    try:
        ran_here = precision.effective(args.precision, meta,
                                       label_formats.EMBEDDINGS not in formats)
    except ValueError as e:
        raise UserError(f"--precision {args.precision}: {e}; use --precision auto or float32") from None
    labels = meta["labels"]
    batch_size, embedder_batch_size = _batch_sizes(meta, args.memory_budget, args.batch_size)
    post, post_summary = post_processing(meta, args)
    embeddings = _embeddings(args, model_dir, meta, config, ran_here)
    grid = WindowGrid(hop_s=config.patch_hop_seconds, window_s=config.patch_samples / config.sample_rate_hz)
    output = fs.absolute(args.output)
    if args.input:
        corpus.check_output_outside(corpus.input_source(fs.absolute(args.input)), output)
    if args.keep_missing and not args.incremental:
        raise UserError("--keep-missing keeps an incremental folder's recordings that left the "
                        "corpus; add --incremental, or drop --keep-missing")
    source, listed, versions = _list_source(args, with_versions=args.incremental)
    files_matched = len(listed)
    names = outputs.unique_names([(r.key, r.path) for r in listed], lambda name: per_recording_files(
        name, formats, args.scores).values())
    model_id = meta["model_id"]
    log.info("label: %d files matched; model %s (%s)", files_matched, model_id, ", ".join(labels))
    fs.check_writable_output(output)  # creates it
    # a template only describes a job: the output is checked and claimed when a job runs
    template = fs.builds_template(options)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    previous = None if template else outputs.claim(
        output, "label", args.overwrite, continues=ledger.continues_incremental if args.incremental else None)
    tables_dir, todo = output, None
    if args.incremental:
        state = ledger.read_state(output)
        if not template:
            ledger.repair_combined(output, state, formats)
            removed = ledger.remove_orphan_runs(output, state, previous)
            gone_parts = tuple(f + "/" for f in removed)
            previous = dict(previous or {}, folders=[
                f for f in (previous or {}).get("folders", ()) if f not in removed], files=[
                f for f in (previous or {}).get("files", ()) if not f.startswith(gone_parts)])
        todo = set(ledger.pending(state.get("files", {}), versions, model_id))
        gone = [] if args.keep_missing else ledger.missing(state.get("files", {}), versions)
        if not todo and not template:
            # nothing to label: an interrupted run's manifest is closed, as its run would have
            if previous and not previous.get("complete", True):
                outputs.finish(output, "label", previous.get("run_id", run_id),
                               previous.get("files", ()), incremental=True, previous=previous)
        if not todo and gone and not template:
            ledger.forget_missing(output, state, gone, state.get("formats", formats))
            print(f"nothing new; {len(gone)} recordings no longer in the corpus removed from "
                  f"the outputs (--keep-missing keeps them)")
            return None
        if not todo:
            log.info("label: nothing new: all %d files already labeled by model %s", files_matched, model_id)
            print(f"nothing new: all {files_matched} files are already labeled by model {model_id}; "
                  "nothing to do")
            return None
        source = [r for r in source if r.key in todo]
        tables_dir = fs.join(output, ledger.RUNS_DIR, run_id)
        log.info("label: incremental run %s: %d new or changed of %d files", run_id, len(todo), files_matched)
    files, folders = _planned_outputs(output, tables_dir, formats, args.incremental and run_id,
                                      run_id)
    if embeddings:
        embeddings["shards"] = _embedding_shards(files_matched)
        emb_files, emb_folders = _planned_embeddings(embeddings["shards"], run_id)
        files, folders = files + emb_files, folders + emb_folders
    if not template:
        # every recording's tables, named before the pipeline writes any
        planned = [rel for r in (source if args.incremental else listed)
                   for rel in per_recording_files(names.get(r.key) or outputs.recording_name(
                       r.key, r.path), formats, args.scores).values()]
        outputs.begin(output, "label", run_id, files + planned, folders, args.incremental,
                      previous)
    fs.makedirs(tables_dir)
    summary = {
        "model_id": model_id, "model": args.model,
        "feature_config_hash": config.hash(), "labels": labels,
        "thresholds": {l: v["settings"]["threshold"] for l, v in post_summary.items()},
        "post_processing": post_summary,
        "hop_s": config.patch_hop_seconds, "formats": formats,
        # where the pipeline runs in this process (DirectRunner): what the model ran in;
        # remote workers resolve `auto` on their own hardware (counter models_in_*)
        "numeric_precision": {"requested": args.precision, "here": ran_here},
        "input": fs.absolute(args.input) if args.input else None,
        "manifest": fs.absolute(args.manifest) if args.manifest else None,
        "files_matched": files_matched,
        "batch_size": batch_size, "memory_budget_bytes": args.memory_budget,
    }
    if embedder_batch_size:
        summary["embedder_batch_size"] = embedder_batch_size
    incremental = None
    if args.incremental:
        incremental = {"run_id": run_id, "versions": {k: versions[k] for k in todo},
                       "todo": sorted(todo), "model_id": model_id, "formats": formats,
                       "sources": {r.key: r.path for r in source},
                       "names": {k: v for k, v in names.items() if k in todo}, "missing": gone}
        summary["files_removed"] = len(gone)
    finish = FinishRun(output, tables_dir, summary, time.time(), incremental, run_id, files, names)
    if embeddings:
        finish.embeddings = _embeddings_summary(embeddings, summary, args, batch_size)
    p = test_pipeline or local_runner.new_pipeline(options)
    build_pipeline(p, source, output, model_dir, meta, config, grid, post, formats,
                   args.scores, args.chunk_seconds, batch_size, tables_dir, finish,
                   args.precision, embedder_batch_size, embeddings)
    temp = _temp_folders(output, tables_dir, run_id) + (
        _planned_embeddings(embeddings["shards"], run_id)[1] if embeddings else [])
    return outputs.run_pipeline(p, options, output, temp)


def _embeddings(args, model_dir, meta, config, ran_here):
    """--formats embeddings → {"embedding": `embed.Embedding`} (None without it); refused in
    one line with --incremental (`earmark embed --incremental` keeps embeddings up to date)
    and with --precision int8 (its 8-bit file has no embedding output)."""
    if label_formats.EMBEDDINGS not in args.formats:
        return None
    if args.incremental:
        raise UserError("--formats embeddings is not written by incremental runs yet; drop "
                        "embeddings from --formats, and keep embeddings of the corpus up to "
                        "date with 'earmark embed --model MODEL --incremental'")
    if precision.resolve(args.precision) == "int8":
        raise UserError("--formats embeddings with --precision int8: the 8-bit file scores, "
                        "it has no embedding output; use --precision auto or float32")
    from earmark.pipelines import embed
    return {"embedding": embed.model_embedding(model_dir, meta, config, {
        "requested": args.precision, "here": ran_here})}


def _embedding_shards(files_matched: int) -> int:
    """The shard count of embeddings/: `earmark embed`'s default for as many recordings, so
    both commands write the same shards of the same corpus."""
    from earmark.pipelines import embeddings_io
    return embeddings_io.default_shards(files_matched)


def _planned_embeddings(shards: int, run_id: str):
    """(files, temporary folders) under embeddings/ of a run with --formats embeddings."""
    from earmark.pipelines import embeddings_io
    from earmark.pipelines.embed_steps import spill_folder
    folder = embeddings_io.FOLDER
    return ([f"{folder}/{embeddings_io.EMBED_FILE}"]
            + [f"{folder}/{n}" for n in embeddings_io.shard_names(shards)],
            [f"{folder}/{spill_folder(run_id)}"])


def _embeddings_summary(embeddings, summary, args, batch_size) -> dict:
    """What FinishRun writes to embeddings/embed.json besides the counts: as `earmark embed`'s."""
    from earmark.pipelines import embeddings_io
    emb = embeddings["embedding"]
    return {"command": "label", **emb.facts(), "model": fs.absolute(args.model),
            "columns": [c for c in embeddings_io.COLUMNS if c != "scores" or emb.labels],
            "numeric_precision": emb.precision, "input": summary["input"],
            "manifest": summary["manifest"], "files_matched": summary["files_matched"],
            "batch_size": batch_size, "shards": embeddings_io.shard_names(embeddings["shards"])}


def _batch_sizes(meta, budget_bytes: int, requested: int = None) -> tuple:
    """→ (windows per model call, windows per call of an installed embedder such as
    BirdNET's or None): the most (up to `requested`, else 128) that keep a labeling process
    within `budget_bytes` by the base's measured memory figures (`model.memory_budget`); a
    warning when even the smallest cannot."""
    from earmark.model import memory_budget
    inner = memory_budget.inner_batch_size(meta, budget_bytes)
    batch = memory_budget.label_batch_size(meta, budget_bytes, requested=requested)
    peak = memory_budget.expected_peak_bytes(meta, batch, inner)
    if peak > budget_bytes:
        log.warning("label: --memory-budget %.2f GB is below what this model needs at any "
                    "batch size (about %.2f GB at %d windows per call); running anyway",
                    budget_bytes / 1e9, peak / 1e9, batch)
    return batch, inner


def _planned_outputs(output, tables_dir, formats, incremental_run: str, run_id: str):
    """What a run is about to write, for the output manifest: exact names (relative to the
    output) and the folders only it creates (its sink's temporary folder; for an
    incremental run, its partition). The launcher adds the per-recording files of the
    recordings it listed."""
    top = [RUN_FILE, outputs.SOURCES_FILE] + label_formats.table_names(formats)
    temp = _temp_folders(output, tables_dir, run_id)
    if not incremental_run:
        return top + [DEAD_LETTER_FILE], temp
    part = f"{ledger.RUNS_DIR}/{incremental_run}"
    run_files = [RUN_FILE, outputs.SOURCES_FILE, SEGMENTS_CSV, DEAD_LETTER_FILE] + (
        [SEGMENTS_JSONL] if "jsonl" in formats else [])
    return top + [ledger.LEDGER_FILE] + [f"{part}/{n}" for n in run_files], temp + [part]


def _temp_folders(output, tables_dir, run_id) -> list:
    """The Beam temporary folder of the run's dead-letter sink (`pipelines/sinks.py`)."""
    return sinks.temp_folders(output, [fs.join(tables_dir, data_files.stem(DEAD_LETTER_FILE))],
                              run_id)


@dataclasses.dataclass
class FinishRun:
    """The run's last step, inside the pipeline, so a job finishes its own run however it
    was launched (a flex template's launcher does not wait): `run.json` with the counts and
    wall time, with --incremental the combined view and then the ledger, and last the
    output manifest (`earmark_outputs.json`) with every file the run wrote."""
    output: str
    tables_dir: str
    summary: dict          # what the launcher knew: model, thresholds, files matched
    started_unix_s: float
    incremental: dict = None  # run_id, versions (of todo), todo, model_id, formats, sources
    run_id: str = ""
    files: tuple = ()      # the names (relative to output) the run writes besides per-recording ones
    names: dict = dataclasses.field(default_factory=dict)  # {key: output name} where the
    #                        plain one cannot be used (`outputs.unique_names`)
    embeddings: dict = None  # --formats embeddings: embed.json's facts (`_embeddings_summary`)

    def __call__(self, _, counts: dict, dead: list, per_recording: list, *written):
        wall_s = time.time() - self.started_unix_s
        hours = counts["audio_hours"]
        summary = {**self.summary, **counts, "wall_s": round(wall_s, 2),
                   "audio_hours_per_wall_hour": round(hours * 3600 / wall_s, 1) if wall_s > 0 else None}
        if self.embeddings:
            self._write_embed_json(counts, written[-1], wall_s)
        inc = self.incremental
        if inc:
            summary.update(run_id=inc["run_id"], files_new_or_changed=len(inc["todo"]))
            fs.write_json(fs.join(self.tables_dir, RUN_FILE), summary)  # the partition is whole
            ledger.pause_for_test("partition")
            ledger.finish_incremental(self.output, inc, {d["file"] for d in dead})
        else:
            fs.write_json(fs.join(self.output, RUN_FILE), summary)
        outputs.finish(self.output, "label", self.run_id,
                       list(self.files) + [n for names in per_recording for n in names],
                       incremental=bool(inc))

    def _write_embed_json(self, counts: dict, embedded: list, wall_s: float) -> None:
        """embeddings/embed.json, as `earmark embed` writes it; the spill folder goes."""
        from earmark.pipelines import embeddings_io
        from earmark.pipelines.embed_steps import spill_folder
        folder = fs.join(self.output, embeddings_io.FOLDER)
        outputs.remove_folder(self.output, f"{embeddings_io.FOLDER}/{spill_folder(self.run_id)}")
        fs.write_json(fs.join(folder, embeddings_io.EMBED_FILE), {
            **self.embeddings, "run_id": self.run_id,
            "files_embedded": counts["files_labeled"], "files_failed": counts["files_failed"],
            "failures_by_reason": counts["failures_by_reason"],
            "windows": sum(int(f["windows"]) for _, f in embedded),
            "audio_hours": counts["audio_hours"], "wall_s": round(wall_s, 2)})


def main(argv=None) -> dict:
    args, beam_args = build_arg_parser().parse_known_args(argv)
    if run(argv) is None:
        return {}
    if fs.builds_template(beam_args):
        print(f"Dataflow template written; outputs will go to {args.output} when it runs")
        return {}
    output = fs.absolute(args.output)
    stats = fs.read_json(fs.join(output, RUN_FILE))
    new = stats.get("files_new_or_changed")  # an incremental run: those it labeled
    print(f"files: {stats['files_matched']} matched, "
          + ("" if new is None else f"{new} new or changed, ")
          + (f"{stats['files_removed']} removed (no longer in the corpus), "
             if stats.get("files_removed") else "")
          + f"{stats['files_labeled']} labeled, "
          f"{stats['files_failed']} failed {stats['failures_by_reason'] or ''}".rstrip())
    ran = (stats.get("numeric_precision") or {}).get("here")   # where this process ran it
    print(f"audio: {stats['audio_hours']:.3f} h in {stats['wall_s']:.1f} s "
          f"({stats['audio_hours_per_wall_hour']}x real time{', ' + ran if ran else ''}); "
          f"segments: {stats['segments_per_label']}")
    print(f"outputs: {output}")
    if stats["files_labeled"] == 0 and stats["files_failed"]:
        raise UserError(all_failed(output, stats))
    return stats


def all_failed(output: str, stats: dict) -> str:
    """The error of a run that labeled none of its files: how many of this run's files
    failed, and its dead letter (an incremental run's: in its partition) when it is there."""
    n, run_id = stats["files_failed"], stats.get("run_id")
    what = "new or changed file" if run_id else "file"
    text = f"the one {what} failed" if n == 1 else f"all {n} {what}s failed"
    dead = (fs.join(output, ledger.RUNS_DIR, run_id, DEAD_LETTER_FILE) if run_id
            else fs.join(output, DEAD_LETTER_FILE))
    return text + (f"; see {dead}" if outputs.exists(dead) else "")
