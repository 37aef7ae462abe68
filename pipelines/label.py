"""`earmark label`: a trained model over a corpus → labeled time segments.

    ListFiles (or manifest) → Reshuffle → PlanChunks (header only) → Reshuffle
      → ReadWindows (decode one chunk) → RunInference (keyed by file, window)
      → group per recording → thresholds, smoothing, merging → outputs

Outputs in `--output`: `segments.csv` (one table sorted by file then start, byte-stable
whatever the worker count), per-recording Raven selection tables (`raven/`) and Audacity
label tracks (`audacity/`), `segments.jsonl`, optional per-window `scores/`, `run.json`
and `dead_letter.jsonl`.
"""
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from earmark.model import data_files, model_files, precision, progress
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig
from earmark.model.segments import (PostProcessing, WindowGrid, model_post_processing, to_segments,
                                    written_labels)
from earmark.pipelines import corpus, fs, label_formats, ledger, outputs
from earmark.pipelines.label_flags import build_arg_parser
from earmark.pipelines.chunks import FileInfo, file_info, plan_chunks, read_chunk_windows
from earmark.pipelines.label_formats import (DEAD_LETTER_FILE, PER_RECORDING, RUN_FILE, SEGMENTS_CSV,
                                             SEGMENTS_JSONL)

log = logging.getLogger("earmark.label")

DEAD_LETTER = "dead_letter"  # the pipeline's tag of failed files


def local_model_dir(model_dir: str) -> str:
    """A local copy of a gs:// model dir, or the local path itself. The copy is cached by
    URI *and* the content of model.json plus each file's size and update time, so a model
    re-trained into the same URI is fetched again, never served stale."""
    if not fs.is_gcs(model_dir):
        return model_dir
    meta_bytes = fs.read_bytes(fs.join(model_dir, model_files.META_FILE))
    meta = model_files.read_meta(lambda name: meta_bytes, model_dir)  # name: META_FILE
    names = model_files.model_files(meta)[::-1]
    key = hashlib.sha256(model_dir.encode() + meta_bytes)
    for name in names:
        for m in fs.FileSystems.match([fs.join(model_dir, name)])[0].metadata_list:
            key.update(f"{name}:{m.size_in_bytes}:{m.last_updated_in_seconds}".encode())
    cache = os.path.join(tempfile.gettempdir(), "earmark-models", key.hexdigest()[:16])
    if not os.path.exists(os.path.join(cache, model_files.META_FILE)):
        os.makedirs(cache, exist_ok=True)
        for name in names:  # model.json last: it marks the copy complete
            with open(os.path.join(cache, name + ".part"), "wb") as f:
                f.write(fs.read_bytes(fs.join(model_dir, name)))
        for name in names:
            os.replace(os.path.join(cache, name + ".part"), os.path.join(cache, name))
    return cache


class WaveformModelHandler(ModelHandler):
    """Runs an exported earmark model (`model.export.Predictor`: image CNN, musicnn or
    BirdNET alike) on batches of waveform windows; one model per process."""

    def __init__(self, model_dir: str, batch_size: int, run_id: str = "",
                 precision_name: str = precision.DEFAULT_PRECISION):
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._run_id = run_id or uuid.uuid4().hex
        self._precision = precision_name   # resolved where the model runs: a worker's hardware

    def load_model(self):
        from earmark.model import export
        predictor = export.predictor(local_model_dir(self._model_dir), self._precision)
        ran = precision.effective(self._precision, predictor.meta)
        beam.metrics.Metrics.counter("label", f"models_in_{ran}").inc()
        return predictor

    def run_inference(self, batch, model, inference_args=None):
        scores = model.predict(np.stack(batch))
        progress.tracker(self._run_id, "label", "windows").update(len(batch))
        return [PredictionResult(None, s) for s in np.asarray(scores)]

    def batch_elements_kwargs(self):
        # fixed-size batches: the model's cost per window falls steeply with batch size
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def share_model_across_processes(self):
        return False


def _dead(path, key, stage, reason, detail=""):
    beam.metrics.Metrics.counter("label", f"failed_{reason}").inc()
    return beam.pvalue.TaggedOutput(DEAD_LETTER, {"path": path, "file": key, "stage": stage,
                                                  "reason": reason, "detail": detail})


class PlanChunks(beam.DoFn):
    """Recording → its chunks (from the header alone) and its FileInfo."""

    def __init__(self, config_json: str, windows_per_chunk: int, run_id: str = "",
                 count_total: bool = False):
        self._config_json, self._windows_per_chunk = config_json, windows_per_chunk
        # the progress total (for an ETA) only where planning and inference share a process
        self._run_id, self._count_total = run_id, count_total

    def setup(self):
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))

    def process(self, rec: corpus.Recording):
        from earmark.model.audio import AudioError
        c = self._config
        ext = os.path.splitext(rec.path)[1].lower()
        if ext not in corpus.AUDIO_EXTENSIONS:
            yield _dead(rec.path, rec.key, "read", "unsupported_extension", ext or "no extension")
            return
        entry = fs.stat_entry(rec.path) if not fs.is_gcs(rec.path) else None
        if entry is not None and entry.problem:  # a FIFO or a device is never opened
            yield _dead(rec.path, rec.key, "read", entry.problem, entry.detail)
            return
        try:
            with fs.open_seekable(rec.path) as f:
                if f.read(1) == b"":
                    raise AudioError("empty_file", "0 bytes")
                f.seek(0)
                info = file_info(f, rec.path, c.sample_rate_hz, c.patch_samples, c.patch_hop_samples)
        except AudioError as e:
            yield _dead(rec.path, rec.key, "decode", e.reason, e.detail)
            return
        except Exception as e:
            yield _dead(rec.path, rec.key, "read", "read_error", f"{type(e).__name__}: {e}"[:300])
            return
        yield beam.pvalue.TaggedOutput("info", (rec.key, info))
        if self._count_total:
            progress.tracker(self._run_id, "label", "windows").add_total(info.num_windows)
        for chunk in plan_chunks(info, self._windows_per_chunk):
            yield rec.key, chunk, info


class ReadWindows(beam.DoFn):
    """(key, chunk, info) → ((key, window index), waveform window) for each window."""

    def __init__(self, config_json: str):
        self._config_json = config_json

    def setup(self):
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))

    def process(self, element):
        key, chunk, info = element
        c = self._config
        try:
            with fs.open_seekable(chunk.path) as f:
                windows = read_chunk_windows(f, info, chunk, c.sample_rate_hz, c.patch_samples,
                                             c.patch_hop_samples, c.resample_quality)
        except Exception as e:
            reason = getattr(e, "reason", "decode_error")
            yield beam.pvalue.TaggedOutput("chunk_failed", (key, f"{reason}: {e}"[:300]))
            return
        beam.metrics.Metrics.counter("label", "windows").inc(len(windows))
        for i, window in enumerate(windows):
            yield (key, chunk.first_window + i), window


class MakeSegments(beam.DoFn):
    """Everything known about one recording → its segments, or a dead-letter record."""

    def __init__(self, labels, post: list, grid: WindowGrid, keep_scores: bool):
        self._labels, self._post = list(labels), list(post)
        self._grid, self._keep_scores = grid, keep_scores

    def process(self, element):
        key, grouped = element
        infos, scored, failures = grouped["info"], grouped["scores"], grouped["failed"]
        info: FileInfo = infos[0]
        if failures:
            yield _dead(info.path, key, "inference" if "inference" in failures[0] else "decode",
                        failures[0].split(":")[0], "; ".join(sorted(set(failures)))[:300])
            return
        scored = sorted(scored, key=lambda kv: kv[0])
        if [k for k, _ in scored] != list(range(info.num_windows)):
            yield _dead(info.path, key, "inference", "missing_windows",
                        f"{len(scored)} of {info.num_windows} windows scored")
            return
        scores = np.stack([s for _, s in scored]) if scored else np.zeros((0, len(self._labels)))
        segments = to_segments(scores, self._labels, self._post, self._grid, info.duration_s)
        beam.metrics.Metrics.counter("label", "files_labeled").inc()
        yield {"file": key, "path": info.path, "duration_s": info.duration_s,
               "segments": segments, "scores": scores if self._keep_scores else None}


# label flag → PostProcessing field, and how to read its value
OVERRIDE_FLAGS = {"threshold": ("threshold", float), "smoothing": ("smoothing_windows", int),
                  "min_duration": ("min_duration_s", float), "max_gap": ("max_gap_s", float),
                  "extend": ("extend_s", float)}


def post_processing(meta: dict, args) -> tuple:
    """Per label: the `PostProcessing` label uses (None: a background label, not written
    unless --emit-background), and for run.json where each value came from: `model`
    (calibrated at train time), `flag`, or `default` (a model trained before calibration)."""
    labels = meta["labels"]
    resolved = model_post_processing(meta)
    settings = {l: resolved[l][0] for l in labels}
    sources = {l: resolved[l][1] for l in labels}
    for flag, (field, kind) in OVERRIDE_FLAGS.items():
        for item in getattr(args, flag):
            name, value = _override(flag, item, labels, kind)
            for label in labels:
                if not name or name == label:
                    settings[label][field], sources[label][field] = value, "flag"
    written = set(written_labels(meta, args.emit_background))
    out = []
    for label in labels:
        wrong = PostProcessing.problem(settings[label])
        if wrong:
            raise UserError(f"post-processing of {label!r}: {wrong[0]} {wrong[1]}; fix the flag")
        pp = PostProcessing.from_dict(settings[label])
        out.append(pp if label in written else None)
    return out, {l: {"settings": settings[l], "from": sources[l], "written": l in written}
                 for l in labels}


def _override(flag, item, labels, kind):
    name, _, value = item.rpartition("=")
    try:
        v = kind(value)
    except ValueError:
        raise UserError(f"--{flag.replace('_', '-')} {item!r}: expected a number or "
                        f"LABEL=number") from None
    if name and name not in labels:
        raise UserError(f"--{flag.replace('_', '-')} {item!r}: {name!r} is not a label of this "
                        f"model ({', '.join(labels)})")
    return name, v


def per_recording_files(name: str, formats, scores: bool) -> dict:
    """{format: path relative to the output} of one recording's per-recording files."""
    wanted = [f for f in ("raven", "audacity") if f in formats] + (["scores"] if scores else [])
    return {f: f"{PER_RECORDING[f][0]}/{name}{PER_RECORDING[f][1]}" for f in wanted}


def _write_per_file(result, output, formats, low_hz, high_hz, model_id):
    """Write one recording's Raven / Audacity / scores files → their names (relative)."""
    segs = result["segments"]
    name = outputs.recording_name(result["file"], result["path"])
    files = per_recording_files(name, formats, result["scores"] is not None)
    for fmt, rel in files.items():
        if fmt == "raven":
            data = label_formats.raven_table(segs, low_hz, high_hz)
        elif fmt == "audacity":
            data = label_formats.audacity_labels(segs)
        else:
            data = label_formats.scores_csv(result["scores"], result["labels"], result["hop_s"])
        fs.write_bytes(fs.join(output, *rel.split("/")), data.encode())
    return sorted(files.values())


def _write_tables(_, results, output, formats, model_id):
    """segments.csv / segments.jsonl (as `formats` asks) and sources.csv → names written."""
    results = sorted(results, key=lambda r: r["file"])
    segments = [dataclasses.replace(s, file=r["file"], model_id=model_id)
                for r in results for s in r["segments"]]
    written = {outputs.SOURCES_FILE: outputs.sources_csv(
        (outputs.recording_name(r["file"], r["path"]), r["path"]) for r in results)}
    written.update(_tables(segments, formats))
    for name, data in written.items():
        fs.write_bytes(fs.join(output, name), data)
    return sorted(written)


def _tables(segments, formats) -> dict:
    """{name: bytes} of segments.csv / segments.jsonl of `segments`, as `formats` asks."""
    tables = {}
    if "csv" in formats:
        tables[SEGMENTS_CSV] = label_formats.segments_csv(segments).encode()
    if "jsonl" in formats:
        tables[SEGMENTS_JSONL] = label_formats.segments_jsonl(segments).encode()
    return tables


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


def build_pipeline(p, source, output, model_dir, meta, config, grid, post, formats,
                   keep_scores, chunk_seconds, batch_size, tables_dir, finish,
                   precision_name=precision.DEFAULT_PRECISION):
    """Wire the label transforms onto `p`. Per-recording files go under `output`; the
    tables, sources.csv and dead letter under `tables_dir` (a run partition `runs/RUN_ID/`
    holds segments.csv whatever the formats: the combined view is rebuilt from it).
    `finish` (a `FinishRun`) runs last, once every file is written."""
    labels = meta["labels"]
    model_id = meta["model_id"]
    run_id = uuid.uuid4().hex  # one progress tracker per run and process
    if isinstance(source, corpus.Source):
        recordings = (p | "Source" >> beam.Create([source])
                      | "ListFiles" >> beam.FlatMap(corpus.list_paths)
                      | "ToRecording" >> beam.Map(lambda path, root=source.root: corpus.Recording(
                          path, "", corpus.relative_key(path, root))))
    else:
        recordings = p | "ManifestRows" >> beam.Create(source)
    windows_per_chunk = max(1, int(round(chunk_seconds / config.patch_hop_seconds)))
    planned = (recordings
               | "ReshuffleFiles" >> beam.Reshuffle()
               | "PlanChunks" >> beam.ParDo(PlanChunks(config.to_json(), windows_per_chunk, run_id,
                                                      fs.single_process(p.options)))
               .with_outputs("info", DEAD_LETTER, main="chunks"))
    read = (planned.chunks
            | "ReshuffleChunks" >> beam.Reshuffle()
            | "ReadWindows" >> beam.ParDo(ReadWindows(config.to_json()))
            .with_outputs("chunk_failed", main="windows"))
    inferred, other = (read.windows | "RunInference" >> RunInference(
        KeyedModelHandler(WaveformModelHandler(model_dir, batch_size, run_id, precision_name))).with_exception_handling())
    scores = inferred | "FileKey" >> beam.MapTuple(
        lambda key, result: (key[0], (key[1], np.asarray(result.inference, np.float32))))
    failed_inference = other.failed_inferences | "FailedBatchFiles" >> beam.FlatMap(
        lambda failed: {(k[0], f"inference_error: {type(failed[1]).__name__}: {failed[1]}"[:300])
                        for k, _ in failed[0]})
    failed = ((read.chunk_failed, failed_inference) | "Failures" >> beam.Flatten())
    results = ({"info": planned.info, "scores": scores, "failed": failed}
               | "GroupPerRecording" >> beam.CoGroupByKey()
               | "MakeSegments" >> beam.ParDo(MakeSegments(labels, post, grid, keep_scores))
               .with_outputs(DEAD_LETTER, main="results"))
    dead = ((planned[DEAD_LETTER], results[DEAD_LETTER]) | "AllDeadLetters" >> beam.Flatten())
    labeled = results.results | "AddLabels" >> beam.Map(
        lambda r: {**r, "labels": labels, "hop_s": config.patch_hop_seconds})
    per_recording = labeled | "WritePerRecording" >> beam.Map(
        _write_per_file, output, formats, config.mel_min_hz, config.mel_max_hz, model_id)
    summaries = labeled | "DropScores" >> beam.Map(lambda r: {**r, "scores": None})
    trigger = p | "Once" >> beam.Create([None])
    table_formats = formats if tables_dir == output else sorted(set(formats) | {"csv"})
    tables = trigger | "WriteTables" >> beam.Map(_write_tables, beam.pvalue.AsList(summaries),
                                                 tables_dir, table_formats, model_id)
    counts = trigger | "CountRun" >> beam.Map(_count_run, beam.pvalue.AsList(summaries),
                                              beam.pvalue.AsList(dead))
    dead_written = (dead | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
                    | "WriteDeadLetter" >> beam.io.WriteToText(
                        fs.join(tables_dir, data_files.stem(DEAD_LETTER_FILE)),
                        file_name_suffix=".jsonl", num_shards=1,
                        shard_name_template=""))
    # side inputs: it runs once every write above is done
    _ = trigger | "FinishRun" >> beam.Map(finish, beam.pvalue.AsSingleton(counts),
                                          beam.pvalue.AsList(dead), beam.pvalue.AsList(per_recording),
                                          beam.pvalue.AsList(tables), beam.pvalue.AsList(dead_written))


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


def _list_source(args, with_versions=False):
    """→ (source for build_pipeline, files matched, {key: version} or None)."""
    if args.manifest:
        manifest = fs.absolute(args.manifest)
        recs, duplicates = corpus.unique_recordings(
            corpus.read_manifest(manifest, require_label=False))
        if duplicates:
            log.info("label: %d manifest rows name a file listed before; each file counts once",
                     duplicates)
        versions = {r.key: _version(fs.stat_entry(r.path)) for r in recs} if with_versions else None
        return recs, len(recs), versions
    input_path = fs.absolute(args.input)
    paths, source = corpus.list_audio(input_path)
    if not with_versions:
        return source, len(paths), None
    entries = ([fs.stat_entry(p) for p in paths] if source.kind != "folder"
               else fs.list_files(source.spec))
    recs = [corpus.Recording(e.path, "", corpus.relative_key(e.path, source.root)) for e in entries]
    versions = {r.key: _version(e) for r, e in zip(recs, entries)}
    return sorted(recs, key=lambda r: r.key), len(recs), versions


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
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = set(formats) - set(label_formats.FORMATS)
    if unknown:
        raise UserError(f"--formats: unknown {sorted(unknown)}; choose from {','.join(label_formats.FORMATS)}")

    model_dir = fs.absolute(args.model)
    meta = _model_meta(model_dir)
    from earmark.model import export
    # the model's own windows (rate, length: its FeatureConfig) and default hop
    _, _, default_hop_s = export.window_spec(meta)
    config = FeatureConfig.from_dict(meta["feature_config"]).with_patch_hop(
        args.hop_seconds or default_hop_s)
    try:
        ran_here = precision.effective(args.precision, meta)
    except ValueError as e:
        raise UserError(f"--precision {args.precision}: {e}; use --precision auto or float32") from None
    labels = meta["labels"]
    post, post_summary = post_processing(meta, args)
    grid = WindowGrid(hop_s=config.patch_hop_seconds, window_s=config.patch_samples / config.sample_rate_hz)
    output = fs.absolute(args.output)
    source, files_matched, versions = _list_source(args, with_versions=args.incremental)
    model_id = meta["model_id"]
    log.info("label: %d files matched; model %s (%s)", files_matched, model_id, ", ".join(labels))
    fs.check_writable_output(output)  # creates it
    # a template only describes a job: the output is checked and claimed when a job runs
    template = fs.builds_template(options)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    previous = None if template else outputs.claim(
        output, "label", args.overwrite, continues=_continues_incremental if args.incremental else None)
    tables_dir, todo = output, None
    if args.incremental:
        state = ledger.read_state(output)
        if not template:
            _repair_combined(output, state, formats)
            _remove_orphan_runs(output, state)
        todo = set(ledger.pending(state.get("files", {}), versions, model_id))
        if not todo:
            log.info("label: nothing new: all %d files already labeled by model %s", files_matched, model_id)
            print(f"nothing new: all {files_matched} files are already labeled by model {model_id}; "
                  "nothing to do")
            return None
        source = [r for r in source if r.key in todo]
        tables_dir = fs.join(output, ledger.RUNS_DIR, run_id)
        log.info("label: incremental run %s: %d new or changed of %d files", run_id, len(todo), files_matched)
    files, patterns = _planned_outputs(formats, args.scores, args.incremental and run_id)
    if not template:
        outputs.begin(output, "label", run_id, files, patterns, args.incremental, previous)
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
    }
    incremental = None
    if args.incremental:
        incremental = {"run_id": run_id, "versions": {k: versions[k] for k in todo},
                       "todo": sorted(todo), "model_id": model_id, "formats": formats,
                       "sources": {r.key: r.path for r in source}}
    finish = FinishRun(output, tables_dir, summary, time.time(), incremental, run_id, files)
    p = test_pipeline or beam.Pipeline(options=options)
    build_pipeline(p, source, output, model_dir, meta, config, grid, post, formats,
                   args.scores, args.chunk_seconds, args.batch_size, tables_dir, finish,
                   args.precision)
    return outputs.run_pipeline(p, options, {output, tables_dir})


def _continues_incremental(manifest, present) -> bool:
    """An incremental run carries on a folder of earlier incremental label runs (one from
    before earmark_outputs.json: its ledger.json), and nothing else."""
    if manifest is not None:
        return manifest.get("command") == "label" and bool(manifest.get("incremental"))
    return ledger.LEDGER_FILE in present


def _planned_outputs(formats, scores: bool, incremental_run: str):
    """What a run is about to write, for the output manifest: exact names (relative to the
    output), and patterns for the per-recording files (named in the pipeline) and, for an
    incremental run, its partition."""
    top = [RUN_FILE, outputs.SOURCES_FILE] + [n for f, n in (("csv", SEGMENTS_CSV),
                                                             ("jsonl", SEGMENTS_JSONL)) if f in formats]
    patterns = sorted(per_recording_files("**", formats, scores).values())
    if not incremental_run:
        return top + [DEAD_LETTER_FILE], patterns
    part = f"{ledger.RUNS_DIR}/{incremental_run}"
    run_files = [RUN_FILE, outputs.SOURCES_FILE, SEGMENTS_CSV, DEAD_LETTER_FILE] + (
        [SEGMENTS_JSONL] if "jsonl" in formats else [])
    return (top + [ledger.LEDGER_FILE] + [f"{part}/{n}" for n in run_files],
            patterns + [f"{part}/**"])


# Test hook, read by FinishRun and nowhere else, set only by tests/test_outputs.py: with
# EARMARK_TEST_PAUSE_AFTER=<stage> the process kills itself (SIGKILL) right after that stage
# of an incremental run's last step, exactly where a crash or a preempted worker could stop
# it. Stages, in order: partition (runs/RUN_ID/run.json written), segments_csv (the combined
# segments.csv rewritten, the rest of the combined view not yet), combined (the whole
# combined view written), ledger (ledger.json replaced). Unset, it does nothing.
TEST_PAUSE_ENV = "EARMARK_TEST_PAUSE_AFTER"


def _test_pause(stage: str) -> None:
    if os.environ.get(TEST_PAUSE_ENV) == stage:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


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

    def __call__(self, _, counts: dict, dead: list, per_recording: list, *written):
        wall_s = time.time() - self.started_unix_s
        hours = counts["audio_hours"]
        summary = {**self.summary, **counts, "wall_s": round(wall_s, 2),
                   "audio_hours_per_wall_hour": round(hours * 3600 / wall_s, 1) if wall_s > 0 else None}
        inc = self.incremental
        if inc:
            summary.update(run_id=inc["run_id"], files_new_or_changed=len(inc["todo"]))
            fs.write_json(fs.join(self.tables_dir, RUN_FILE), summary)  # the partition is whole
            _test_pause("partition")
            _finish_incremental(self.output, inc, {d["file"] for d in dead})
        else:
            fs.write_json(fs.join(self.output, RUN_FILE), summary)
        outputs.finish(self.output, "label", self.run_id,
                       list(self.files) + [n for names in per_recording for n in names],
                       incremental=bool(inc))


def _finish_incremental(output, inc, failed):
    """Record this run's files in the ledger (`failed`: their keys that failed): first the
    combined view from each file's latest run, then the ledger, atomically, naming this run
    and the digest of each combined file. Killed anywhere before the ledger is replaced, the
    old ledger still describes the folder (and the next run rebuilds a half-written view)."""
    entries = ledger.read(output)
    for key in inc["todo"]:
        entries[key] = {"version": inc["versions"][key], "model_id": inc["model_id"],
                        "run_id": inc["run_id"], "status": "failed" if key in failed else "labeled",
                        "source": inc["sources"][key]}
    # a recording that failed this time keeps no per-recording files of an older version
    stale = [rel for key in sorted(set(inc["todo"]) & failed)
             for rel in per_recording_files(outputs.recording_name(key, inc["sources"][key]),
                                            ("raven", "audacity"), True).values()]
    outputs.delete(output, [rel for rel in stale if outputs.exists(fs.join(output, rel))])
    combined = _combined_files(output, entries, inc["formats"], inc["run_id"])
    _write_combined(output, combined,
                    after_each=lambda name: name == SEGMENTS_CSV and _test_pause("segments_csv"))
    _test_pause("combined")
    ledger.write(output, entries, inc["run_id"],
                 {name: ledger.digest(data) for name, data in combined.items()}, inc["formats"])
    _test_pause("ledger")


def _combined_files(output, entries, formats, run_id) -> dict:
    """The combined view at the top of an incremental output, from the ledger's entries and
    the run partitions: {name: bytes} of segments.csv / segments.jsonl (as `formats` asks),
    sources.csv and run.json (the summary of run `run_id`; None: left out)."""
    files = _tables(ledger.combined_segments(output, entries), formats)
    files[outputs.SOURCES_FILE] = outputs.sources_csv(
        (outputs.recording_name(k, e.get("source", k)), e.get("source", k))
        for k, e in entries.items() if e["status"] == "labeled")
    if run_id:
        files[RUN_FILE] = fs.read_bytes(fs.join(output, ledger.RUNS_DIR, run_id, RUN_FILE))
    return files


def _write_combined(output, files: dict, after_each=None, drop_others=True) -> None:
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


def _repair_combined(output, state: dict, formats) -> None:
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
                     or ledger.digest(fs.read_bytes(fs.join(output, n))) != d)
        if not bad:
            return
        log.info("label: %s not as run %s left them (a run stopped before its end); rebuilding "
                 "from %s/", ", ".join(bad), state.get("complete_run"), ledger.RUNS_DIR)
        formats = state.get("formats", formats)
    _write_combined(output, _combined_files(output, entries, formats, state.get("complete_run")),
                    drop_others=want is not None)


def _remove_orphan_runs(output, state: dict) -> None:
    """Run partitions the ledger does not name are what killed runs left: removed, so the
    folder holds what uninterrupted runs write. (One output takes one run at a time.)"""
    keep = {e["run_id"] for e in state.get("files", {}).values()} | {state.get("complete_run")}
    runs = fs.join(output, ledger.RUNS_DIR)
    if not fs.is_gcs(runs):
        import shutil
        for run in sorted(set(os.listdir(runs) if os.path.isdir(runs) else ()) - keep):
            log.info("label: removing %s/%s, left by a run that did not finish", ledger.RUNS_DIR, run)
            shutil.rmtree(os.path.join(runs, run), ignore_errors=True)
        return
    orphans = [n for n in outputs.list_files(runs) if n.split("/")[0] not in keep]
    if orphans:
        log.info("label: removing %d files of runs that did not finish", len(orphans))
        outputs.delete(runs, orphans)


def main(argv=None) -> dict:
    args, beam_args = build_arg_parser().parse_known_args(argv)
    if run(argv) is None:
        return {}
    if fs.builds_template(beam_args):
        print(f"Dataflow template written; outputs will go to {args.output} when it runs")
        return {}
    output = fs.absolute(args.output)
    stats = fs.read_json(fs.join(output, RUN_FILE))
    print(f"files: {stats['files_matched']} matched, {stats['files_labeled']} labeled, "
          f"{stats['files_failed']} failed {stats['failures_by_reason'] or ''}".rstrip())
    print(f"audio: {stats['audio_hours']:.3f} h in {stats['wall_s']:.1f} s "
          f"({stats['audio_hours_per_wall_hour']}x real time); segments: {stats['segments_per_label']}")
    print(f"outputs: {output}")
    if stats["files_labeled"] == 0 and stats["files_matched"]:
        raise UserError(f"all {stats['files_matched']} files failed; see {fs.join(output, DEAD_LETTER_FILE)}")
    return stats
