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
from earmark.pipelines import corpus, fs, label_formats, ledger, outputs
from earmark.pipelines.label_flags import build_arg_parser
from earmark.pipelines.label_steps import DEAD_LETTER, MakeSegments, ReadWindows, Score
from earmark.pipelines.label_formats import (DEAD_LETTER_FILE, RUN_FILE, SEGMENTS_CSV,
                                             SEGMENTS_JSONL)

log = logging.getLogger("earmark.label")

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
    return label_formats.per_recording_files(name, formats, scores)


def _write_per_file(result, output, formats, low_hz, high_hz, model_id):
    """Write one recording's Raven / Audacity / scores files → their names (relative)."""
    segs = result["segments"]
    name = outputs.recording_name(result["file"], result["path"])
    files = per_recording_files(name, formats, result["scores"] is not None)
    for fmt, rel in files.items():
        data = label_formats.OUTPUT_FORMATS[fmt].write(segs, dict(result, low_hz=low_hz, high_hz=high_hz))
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
            _write_per_file, self._output, formats, config.mel_min_hz, config.mel_max_hz, self._model_id)
        summaries = labeled | "DropScores" >> beam.Map(lambda r: {**r, "scores": None})
        trigger = p | "Once" >> beam.Create([None])
        table_formats = formats if tables_dir == self._output else sorted(set(formats) | {"csv"})
        tables = trigger | "WriteTables" >> beam.Map(_write_tables, beam.pvalue.AsList(summaries),
                                                     tables_dir, table_formats, self._model_id)
        counts = trigger | "CountRun" >> beam.Map(_count_run, beam.pvalue.AsList(summaries),
                                                  beam.pvalue.AsList(dead))
        dead_written = (dead | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
                        | "WriteDeadLetter" >> beam.io.WriteToText(
                            fs.join(tables_dir, data_files.stem(DEAD_LETTER_FILE)),
                            file_name_suffix=".jsonl", num_shards=1,
                            shard_name_template=""))
        # side inputs: it runs once every write above is done
        return trigger | "FinishRun" >> beam.Map(
            self._finish, beam.pvalue.AsSingleton(counts), beam.pvalue.AsList(dead),
            beam.pvalue.AsList(per_recording), beam.pvalue.AsList(tables),
            beam.pvalue.AsList(dead_written))


def build_pipeline(p, source, output, model_dir, meta, config, grid, post, formats,
                   keep_scores, chunk_seconds, batch_size, tables_dir, finish,
                   precision_name=precision.DEFAULT_PRECISION):
    """Wire the label steps onto `p`: ListRecordings → ReadWindows → Score → MakeSegments →
    WriteSegments. Per-recording files go under `output`; the tables, sources.csv and dead
    letter under `tables_dir` (a run partition `runs/RUN_ID/` holds segments.csv whatever
    the formats: the combined view is rebuilt from it). `finish` (a `FinishRun`) runs last,
    once every file is written."""
    run_id = uuid.uuid4().hex  # one progress tracker per run and process
    recordings = p | "ListRecordings" >> ListRecordings(source)
    read = recordings | "ReadWindows" >> ReadWindows(config, chunk_seconds, run_id,
                                                     fs.single_process(p.options))
    scored = read["windows"] | "Score" >> Score(model_dir, batch_size, run_id, precision_name)
    made = ({"info": read["info"], "scores": scored["scores"], "chunk_failed": read["chunk_failed"],
             "inference_failed": scored["failed"]}
            | "MakeSegments" >> MakeSegments(meta["labels"], post, grid, keep_scores))
    _ = ({"results": made["results"], "unread": read[DEAD_LETTER], "unlabeled": made[DEAD_LETTER]}
         | "WriteSegments" >> WriteSegments(output, tables_dir, meta["labels"], meta["model_id"],
                                            config, formats, finish))


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
        output, "label", args.overwrite, continues=ledger.continues_incremental if args.incremental else None)
    tables_dir, todo = output, None
    if args.incremental:
        state = ledger.read_state(output)
        if not template:
            ledger.repair_combined(output, state, formats)
            ledger.remove_orphan_runs(output, state)
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


def _planned_outputs(formats, scores: bool, incremental_run: str):
    """What a run is about to write, for the output manifest: exact names (relative to the
    output), and patterns for the per-recording files (named in the pipeline) and, for an
    incremental run, its partition."""
    top = [RUN_FILE, outputs.SOURCES_FILE] + label_formats.table_names(formats)
    patterns = sorted(per_recording_files("**", formats, scores).values())
    if not incremental_run:
        return top + [DEAD_LETTER_FILE], patterns
    part = f"{ledger.RUNS_DIR}/{incremental_run}"
    run_files = [RUN_FILE, outputs.SOURCES_FILE, SEGMENTS_CSV, DEAD_LETTER_FILE] + (
        [SEGMENTS_JSONL] if "jsonl" in formats else [])
    return (top + [ledger.LEDGER_FILE] + [f"{part}/{n}" for n in run_files],
            patterns + [f"{part}/**"])


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
            ledger.pause_for_test("partition")
            ledger.finish_incremental(self.output, inc, {d["file"] for d in dead})
        else:
            fs.write_json(fs.join(self.output, RUN_FILE), summary)
        outputs.finish(self.output, "label", self.run_id,
                       list(self.files) + [n for names in per_recording for n in names],
                       incremental=bool(inc))


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
