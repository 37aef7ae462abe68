"""`earmark prepare`: a corpus of labeled recordings → sharded log-mel patch TFRecords
(or, with `--base` an embedding base, raw waveform windows at that base's rate and length).

    ListFiles (or manifest rows, annotated recordings) → Reshuffle → DecodeToPatches
      → split → WriteToTFRecord

Beside the shards: `features.json` (FeatureConfig + label vocabulary), `stats.json`
(files, patches and seconds per label per split, failures by reason) and
`dead_letter.jsonl` (one `{path, stage, reason, detail}` line per file that failed).
"""
import collections
import dataclasses
import json
import logging
import os
import uuid

import apache_beam as beam

from earmark.model import annotations, progress, splits, window_labels
from earmark.model.data_files import (DEAD_LETTER_FILE, FEATURES_FILE, RECORDINGS_FILE, SHARD_SUFFIX,
                                     STATS_FILE, stem)
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig
from earmark.pipelines import corpus, flags, fs, local_runner, outputs, sinks
from earmark.pipelines.prepare_flags import build_arg_parser

log = logging.getLogger("earmark.prepare")


class DecodeToPatches(beam.DoFn):
    """Recording → (split, serialized Example) per labeled window; failures → dead letter.

    A clip is one event of its label; an annotated recording has its events. Windows
    (`model.windowing`) are labeled by `model.window_labels`; ambiguous ones are counted and
    left out. Annotated events running past the audio's end go to the dead letter and their
    windows are left out too."""

    DEAD_LETTER = "dead_letter"
    FILE_OK = "file_ok"

    def __init__(self, config_json: str, labels, fractions, decoder: str, files_matched: int,
                 single_process: bool = True, rules: window_labels.WindowRules = None,
                 split_by: str = "recording"):
        self._config_json = config_json
        # progress: a total (and so an ETA) only where this process does the whole run
        self._progress_total = files_matched if single_process else None
        self._run_id = uuid.uuid4().hex
        self._labels = list(labels)
        self._fractions = tuple(fractions)
        self._split_by = split_by   # "recording" | "time" (annotated recordings: model.splits)
        self._decoder = decoder
        self._rules = rules or window_labels.WindowRules()
        self._files_ok = beam.metrics.Metrics.counter("prepare", "files_ok")
        self._files_failed = beam.metrics.Metrics.counter("prepare", "files_failed")
        self._patches = beam.metrics.Metrics.counter("prepare", "patches")

    def setup(self):
        from earmark.model.frontend import Frontend
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))
        self._config_hash = self._config.hash()
        self._frontend = Frontend(self._config)
        self._label_index = {name: i for i, name in enumerate(self._labels)}
        self._tracker = progress.tracker(self._run_id, "prepare", "files", self._progress_total)

    def process(self, recording: corpus.Recording):
        from earmark.model import audio
        stage = "read"
        try:
            if recording.events is None and not recording.label:
                raise audio.AudioError("no_label_folder", "a file directly in the corpus root; "
                                       "put it in a <label>/ folder")
            if recording.events is None and recording.label not in self._label_index:
                raise audio.AudioError("unknown_label", f"{recording.label!r} is not in features.json")
            ext = os.path.splitext(recording.path)[1].lower()
            if ext not in corpus.AUDIO_EXTENSIONS:
                raise audio.AudioError("unsupported_extension",
                                       f"{ext or 'no extension'}; expected one of "
                                       + " ".join(corpus.AUDIO_EXTENSIONS))
            check_readable(recording.path)
            try:
                data = fs.read_bytes(recording.path)
            except Exception as e:
                raise audio.AudioError("read_error", f"{type(e).__name__}: {e}"[:300]) from None
            stage = "decode"
            waveform, rate, channels = audio.load_waveform(
                data, self._config.sample_rate_hz, recording.path,
                self._config.resample_quality, self._decoder)
            stage = "features"
            patches, starts, _ = self._frontend.patches(waveform)
        except audio.AudioError as e:
            yield from self._dead_letter(recording, stage, e.reason, e.detail)
            return
        except Exception as e:  # never lose a file to an unexpected error: account for it
            yield from self._dead_letter(recording, stage, "unexpected_error",
                                         f"{type(e).__name__}: {e}"[:300])
            return
        duration_s = len(waveform) / self._config.sample_rate_hz
        events, ignore = self._events(recording, duration_s)
        for bad in ignore:
            yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, bad[2])
        yield from self._examples(recording, patches, starts, duration_s, events,
                                  [b[:2] for b in ignore] + list(recording.ignore_s))

    def _events(self, recording, duration_s):
        """→ (events to label windows by, [(start, end, dead-letter record)] of annotated
        events that run past the audio's end)."""
        from earmark.model.events import Event
        if recording.events is None:
            return [window_labels.clip_event(recording.label, duration_s)], []
        events, ignore = [], []
        for row in recording.events:
            if row.end_s > duration_s + 1e-3:
                beam.metrics.Metrics.counter("prepare", "failed_annotation_past_end").inc()
                ignore.append((row.start_s, row.end_s, annotation_dead_letter(
                    row, recording.path, "past_end",
                    f"event {row.start_s:g}-{row.end_s:g} s ends after the recording "
                    f"({duration_s:.3f} s); its windows are left out")))
            else:
                events.append(Event(row.start_s, row.end_s, row.label))
        return events, ignore

    def _spans(self, recording, duration_s, events) -> list:
        """[(start_s, end_s, split)] of the recording's time (`model.splits`): one span for a
        clip, a recording a manifest's split column placed, or any recording when the corpus
        is split by recording; time blocks of an annotated recording otherwise."""
        if recording.split:
            return [(0.0, duration_s, recording.split)]
        if recording.events is None or self._split_by != "time":
            return [(0.0, duration_s, splits.split_of(recording.key, self._fractions))]
        return splits.block_splits(recording.key, duration_s, events, self._fractions)

    def _examples(self, recording, patches, starts, duration_s, events, ignore):
        from earmark.model.examples import make_example
        c = self._config
        window_s = c.patch_samples / c.sample_rate_hz
        if recording.events is None:  # a clip: its label, whatever its name
            kinds = window_labels.label_windows(starts, window_s, events, ignore,
                                                self._rules.min_overlap)
        else:
            kinds = self._rules.label(starts, window_s, events, ignore)
        spans = self._spans(recording, duration_s, events)
        per_split = {split: {"per_label": {}, "skipped": {}, "patches": 0, "seconds": 0.0}
                     for _, _, split in spans}
        for a, b, split in spans:
            per_split[split]["seconds"] += b - a
        for patch, start, w in zip(patches, starts, kinds):
            end = min(start + c.patch_seconds, duration_s)
            split = splits.window_split(spans, start, end)
            kind = w.kind if split else splits.SPLIT_BOUNDARY
            counts = per_split[split or splits.window_split(spans, start, start)]
            if kind not in (window_labels.EVENT, window_labels.BACKGROUND):
                counts["skipped"][kind] = counts["skipped"].get(kind, 0) + 1
                continue
            for name in w.labels:
                counts["per_label"][name] = counts["per_label"].get(name, 0) + 1
            counts["patches"] += 1
            yield split, make_example(patch, [self._label_index[n] for n in w.labels], w.labels,
                                      recording.path, recording.key, float(start), float(end),
                                      start + c.patch_seconds > duration_s + 1e-9, self._config_hash)
        kept = sum(v["patches"] for v in per_split.values())
        truth = events if recording.events is None else \
            [e for e in events if not self._rules.is_negative(e.label)]
        self._files_ok.inc()
        self._patches.inc(kept)
        self._progress(kept)
        whole = len(spans) == 1
        yield beam.pvalue.TaggedOutput(self.FILE_OK, {
            "label": recording.label, "splits": per_split,
            "recordings": [{
                "key": recording.key, "source": recording.path, "split": split,
                "duration_s": round(duration_s, 6),
                **({} if whole else {"span_s": [round(a, 6), round(b, 6)]}),
                "events": [[e.start_s, e.end_s, e.label] for e in sorted(truth)
                           if a - 1e-6 <= e.start_s and e.end_s <= b + 1e-6],
                # reviewed spans that hold no event (`no` verdicts): with the events, what
                # calibration counts hits and false alarms on (model.data.read_reviewed)
                # (and the label each rules out; null: every label)
                **({"negatives": [[e.start_s, e.end_s, self._rules.negated(e.label)]
                                  for e in sorted(events) if self._rules.is_negative(e.label)
                                  and a - 1e-6 <= e.start_s and e.end_s <= b + 1e-6]}
                   if recording.events is not None and self._rules.extent == "selections"
                   else {}),
                # a partly annotated recording's other time is unknown: not for
                # scoring events (model.data.read_recordings leaves it out)
                "annotated_extent": "full" if recording.events is None
                else self._rules.extent} for a, b, split in spans]})

    def _dead_letter(self, recording, stage, reason, detail):
        self._files_failed.inc()
        beam.metrics.Metrics.counter("prepare", f"failed_{reason}").inc()
        self._progress(0)
        yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, {
            "path": recording.path, "label": recording.label, "stage": stage,
            "reason": reason, "detail": detail})

    def _progress(self, patches: int):
        self._tracker.update(1)


# prepare decodes a recording whole: bigger files are refused, not read (about 3 h of 48-kHz
# stereo 16-bit WAV; compressed files hold more)
MAX_FILE_BYTES = 2 * 1024 ** 3


def check_readable(path: str) -> None:
    """Raise AudioError for what must not be opened (a FIFO, a device, a dangling link, a link
    loop) or read whole (over MAX_FILE_BYTES), before any read."""
    from earmark.model.audio import AudioError
    if fs.is_gcs(path):
        return  # objects are regular by nature; their size is checked on read
    entry = fs.stat_entry(path)
    if entry.problem:
        raise AudioError(entry.problem, entry.detail)
    if entry.size_bytes > MAX_FILE_BYTES:
        raise AudioError("too_large", f"{entry.size_bytes} bytes; prepare decodes a recording "
                         f"whole (at most {MAX_FILE_BYTES} bytes): split it into parts")


def annotation_dead_letter(row, recording_path, reason, detail) -> dict:
    """The dead-letter record of one annotation (a row of a table, or a whole table)."""
    return {"path": row.source, "line": row.line, "recording": recording_path,
            "stage": "annotations", "reason": reason, "detail": detail}


def _sum_tuples(rows):
    return tuple(sum(col) for col in zip(*rows)) if rows else (0, 0, 0.0)


def _per_split_label(file_ok: dict):
    """One file's ((split, label), (files, windows, seconds)) rows: a label counts the
    recordings holding windows of it in the split, those windows, and the recordings'
    seconds in the split."""
    for split, counts in file_ok["splits"].items():
        for label, windows in counts["per_label"].items():
            yield (split, label), (1, windows, counts["seconds"])


def _per_split_skipped(file_ok: dict):
    for split, counts in file_ok["splits"].items():
        for kind, windows in counts["skipped"].items():
            yield (split, kind), windows


def _write_stats(_, per_split_label, skipped, failures, path, files_matched, launcher_counts,
                 shards=(), table_failures=()):
    splits = {s: {} for s in corpus.SPLITS}
    for (split, label), (files, patches, seconds) in sorted(per_split_label):
        splits[split][label] = {"files": files, "patches": patches, "seconds": round(seconds, 3)}
    windows_skipped = {s: {} for s in corpus.SPLITS}
    for (split, kind), n in sorted(skipped):
        windows_skipped[split][kind] = n
    file_failures = {r: n for (stage, r), n in failures if stage != ANNOTATION_STAGE}
    files_failed = sum(file_failures.values())
    stats = {
        "files_matched": files_matched,
        "files_ok": files_matched - files_failed,
        "files_failed": files_failed,
        "failures_by_reason": dict(sorted(file_failures.items())),
        "patches": sum(v["patches"] for s in splits.values() for v in s.values()),
        "splits": splits,
        "windows_left_out": windows_skipped,
    }
    if launcher_counts:  # annotated recordings: every annotation used or dead-lettered
        stats["annotations"] = _annotation_stats(launcher_counts["per_table"], table_failures)
    # exactly the shards this run wrote (relative to the output): what train reads
    stats["shards"] = {s: sorted(name for split, name in shards if split == s) for s in corpus.SPLITS}
    fs.write_json(path, stats)
    return path


def _annotation_stats(per_table, table_failures) -> dict:
    """The import summary: per table (`corpus.TableSummary`), the rows the pipeline found
    unusable (events past the recording's end) moved from events to failed; and totals.
    For each table and in total: rows = events + events_left_out + failed."""
    found = {}
    for (table, reason), n in table_failures:
        found.setdefault(table, {})[reason] = n
    tables = []
    for t in per_table:
        t = dict(t, failed_by_reason=dict(t["failed_by_reason"]))
        for reason, n in found.get(t["table"], {}).items():
            t["events"] -= n
            t["failed_by_reason"][reason] = t["failed_by_reason"].get(reason, 0) + n
        t["failed_by_reason"] = dict(sorted(t["failed_by_reason"].items()))
        tables.append(t)
    by_reason = {}
    for t in tables:
        for reason, n in t["failed_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    return {
        "tables": len(tables),
        "read": sum(t["rows"] for t in tables),
        "events_used": sum(t["events"] for t in tables),
        # good rows of recordings left out whole (`unusable_annotations`): never background
        "events_left_out": sum(t["events_left_out"] for t in tables),
        "failed": sum(by_reason.values()),
        "failed_by_reason": dict(sorted(by_reason.items())),
        "per_table": tables}


ANNOTATION_STAGE = "annotations"


def build_pipeline(p, source, output, config, labels, fractions, decoder, files_matched,
                   num_shards, launcher_dead=(), rules=None, launcher_counts=None, run_id="",
                   split_by="recording"):
    """Wire the prepare transforms onto pipeline `p`. `source` is a `corpus.Source` (a
    folder or glob of class folders, listed inside the pipeline) or a list of `Recording`s
    (manifest rows, annotated recordings). `launcher_dead`: dead-letter records found before the pipeline (annotation
    tables that match no recording, recordings no table annotates)."""
    if isinstance(source, corpus.Source):
        recordings = (
            p
            | "Source" >> beam.Create([source])
            | "ListFiles" >> beam.FlatMap(corpus.list_clip_paths)
            | "ToRecording" >> beam.Map(corpus.clip_recording, source.root))
    else:
        recordings = p | "ManifestRows" >> beam.Create(source)
    results = (
        recordings
        | "Reshuffle" >> beam.Reshuffle()
        | "DecodeToPatches" >> beam.ParDo(DecodeToPatches(
            config.to_json(), labels, fractions, decoder, files_matched,
            fs.single_process(p.options), rules, split_by)).with_outputs(
                DecodeToPatches.DEAD_LETTER, DecodeToPatches.FILE_OK, main="examples"))
    by_split = results.examples | "BySplit" >> beam.Partition(
        lambda kv, n: corpus.SPLITS.index(kv[0]), len(corpus.SPLITS))
    shards = []  # (split, shard name relative to the output) of every shard written
    for split, examples in zip(corpus.SPLITS, by_split):
        shards.append(
            examples
            | f"Values{split.title()}" >> beam.Values()
            | f"Write{split.title()}" >> sinks.write_tfrecord(
                fs.join(output, split), output, run_id, file_name_suffix=SHARD_SUFFIX,
                num_shards=num_shards, compression_type=beam.io.filesystem.CompressionTypes.GZIP)
            | f"ShardNames{split.title()}" >> beam.Map(
                lambda path, split=split: (split, outputs.relative(output, path))))
    shards = tuple(shards) | "AllShards" >> beam.Flatten()
    found_before = p | "LauncherDeadLetters" >> beam.Create(list(launcher_dead))
    dead = ((results[DecodeToPatches.DEAD_LETTER], found_before)
            | "AllDeadLetters" >> beam.Flatten())
    dead_written = (dead
         | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
         | "WriteDeadLetter" >> sinks.write_text(
             fs.join(output, stem(DEAD_LETTER_FILE)), output, run_id, file_name_suffix=".jsonl",
             num_shards=1, shard_name_template=""))
    file_ok = results[DecodeToPatches.FILE_OK]
    recordings_written = (file_ok
         | "RecordingJson" >> beam.FlatMap(lambda r: [json.dumps(one, sort_keys=True)
                                                     for one in r["recordings"]])
         | "WriteRecordings" >> sinks.write_text(
             fs.join(output, stem(RECORDINGS_FILE)), output, run_id, file_name_suffix=".jsonl",
             num_shards=1, shard_name_template=""))
    per_split_label = (
        file_ok
        | "KeySplitLabel" >> beam.FlatMap(_per_split_label)
        | "SumPerSplitLabel" >> beam.CombinePerKey(_sum_tuples))
    skipped = (file_ok
               | "KeySplitSkipped" >> beam.FlatMap(_per_split_skipped)
               | "SumSkipped" >> beam.CombinePerKey(sum))
    failures = (dead | "FailureReason" >> beam.Map(lambda d: (d["stage"] == ANNOTATION_STAGE and
                                                              ANNOTATION_STAGE or "file", d["reason"]))
                | "CountReasons" >> beam.combiners.Count.PerElement())
    table_failures = (results[DecodeToPatches.DEAD_LETTER]
                      | "TableFailures" >> beam.FlatMap(
                          lambda d: [((d["path"], d["reason"]), 1)]
                          if d["stage"] == ANNOTATION_STAGE else [])
                      | "CountTableFailures" >> beam.CombinePerKey(sum))
    trigger = p | "StatsTrigger" >> beam.Create([None])
    stats_written = trigger | "WriteStats" >> beam.Map(
        _write_stats, beam.pvalue.AsList(per_split_label), beam.pvalue.AsList(skipped),
        beam.pvalue.AsList(failures), fs.join(output, STATS_FILE), files_matched,
        launcher_counts, beam.pvalue.AsList(shards), beam.pvalue.AsList(table_failures))
    # last, once every file is written (side inputs): the output manifest, complete
    _ = trigger | "FinishRun" >> beam.Map(
        _finish_run, output, run_id, beam.pvalue.AsList(shards), beam.pvalue.AsList(stats_written),
        beam.pvalue.AsList(dead_written), beam.pvalue.AsList(recordings_written))


def _finish_run(_, output, run_id, shards, *written):
    """The run's last step: `earmark_outputs.json` lists exactly what this run wrote."""
    outputs.finish(output, "prepare", run_id,
                   [FEATURES_FILE, STATS_FILE, DEAD_LETTER_FILE, RECORDINGS_FILE]
                   + [name for _, name in shards])


def feature_config_for(base: str, patch_hop_seconds: float = None,
                       resample_quality: str = FeatureConfig.resample_quality) -> FeatureConfig:
    """The FeatureConfig that `base` trains on: an embedding base's waveform windows, or the
    log-mel default (image bases, or no base)."""
    from earmark.model import base_registry
    from earmark.model.features import embedding_base_config
    base = base_registry.canonical(base)
    if base is not None and not base_registry.is_registered(base):
        raise UserError(f"--base {base!r}: choose one of {', '.join(base_registry.names())}, "
                        "or embedding bases joined by + (an ensemble)")
    try:
        spec = base_registry.get(base) if base is not None else None
    except ValueError as e:   # an ensemble its members cannot form
        raise UserError(f"--base {base}: {e}") from None
    try:
        if spec is not None and spec.input == "waveform":
            return embedding_base_config(spec, patch_hop_seconds, resample_quality)
        return FeatureConfig(patch_hop_seconds=patch_hop_seconds or FeatureConfig.patch_hop_seconds,
                             resample_quality=resample_quality)
    except ValueError as e:
        raise UserError(f"bad feature setting: {e}") from None


def run(argv=None, save_main_session=True, test_pipeline=None):
    """Parse flags, list the corpus, write features.json, run the pipeline; → PipelineResult."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    fs.check_beam_flags(beam_args, "earmark prepare")
    options = fs.pipeline_options(beam_args, save_main_session)
    flags.resolve_label_column(args)
    columns = corpus.ManifestColumns.from_args(args)

    fractions = corpus.parse_fractions(args.split)
    if args.split_by != "auto" and not args.annotations:
        raise UserError(f"--split-by {args.split_by} splits annotated recordings; clips are "
                        "split whole: add --annotations, or drop --split-by")
    config = feature_config_for(args.base, args.patch_hop_seconds, args.resample_quality)
    output = fs.absolute(args.output)
    if args.input:
        corpus.check_output_outside(corpus.input_source(fs.absolute(args.input)), output)
    launcher_dead, launcher_counts, rules = [], None, None
    if args.annotations:
        source, files_matched, labels, rules, launcher_dead, launcher_counts = \
            _annotated_source(args)
    elif args.manifest:
        manifest = fs.absolute(args.manifest)
        recordings, duplicates = corpus.unique_recordings(corpus.read_manifest(
            manifest, columns=columns, audio_root=args.audio_root,
            fractions=fractions))
        if duplicates:
            log.info("prepare: %d manifest rows name a file listed before; each file counts once",
                     duplicates)
        source = _one_spelling_of_manifest_rows(recordings)
        files_matched = len(recordings)
        labels = sorted({r.label for r in source})
    else:
        input_path = fs.absolute(args.input)
        recordings, source = corpus.list_input(input_path)
        files_matched = len(recordings)
        labels = sorted({r.label for r in recordings} - {""})
    log.info("prepare: %d files matched, %d labels: %s", files_matched, len(labels),
             ", ".join(labels))
    split_by = "recording"   # clips and manifest rows: whole files
    if args.annotations:
        split_by = splits.split_by_for([r.key for r in source if r.split is None], fractions,
                                       args.split_by)
        log.info("prepare: annotated recordings split by %s%s", split_by,
                 f" (blocks of about {splits.BLOCK_S:g} s)" if split_by == "time" else "")

    fs.check_writable_output(output)  # creates it
    run_id = uuid.uuid4().hex
    if not fs.builds_template(options):  # a template's output is the job's to claim
        outputs.claim(output, "prepare", args.overwrite)
        outputs.begin(output, "prepare", run_id,
                      [FEATURES_FILE, STATS_FILE, DEAD_LETTER_FILE, RECORDINGS_FILE],
                      _temp_folders(output, run_id))
    fs.write_json(fs.join(output, FEATURES_FILE), {
        "feature_config": config.to_dict(),
        "feature_config_hash": config.hash(),
        "labels": labels,
        "background_labels": [l for l in labels if rules.is_negative(l)] if rules else
        window_labels.background_labels(labels),
        "split_fractions": dict(zip(corpus.SPLITS, fractions)),
        "split_by": split_by,
        "split_column": columns.record(),
        "source": args.manifest or args.input,
        "annotations": {"path": args.annotations, "label_column": args.label_column,
                        "encoding": args.annotation_encoding, "min_overlap": rules.min_overlap,
                        "background": rules.background, "annotated_extent": rules.extent,
                        "negative_labels": list(rules.negative_labels),
                        "event_labels": list(rules.event_labels)}
        if args.annotations else None,
        "example_schema": "see docs/prepare.md#example-schema",
    })
    p = test_pipeline or local_runner.new_pipeline(options)
    build_pipeline(p, source, output, config, labels, fractions, args.decoder, files_matched,
                   args.num_shards, launcher_dead,
                   rules or window_labels.WindowRules(args.min_overlap), launcher_counts, run_id,
                   split_by)
    return outputs.run_pipeline(p, options, output, _temp_folders(output, run_id))


def _temp_folders(output, run_id) -> list:
    """The Beam temporary folders of the run's sinks (`pipelines/sinks.py`)."""
    prefixes = [fs.join(output, split) for split in corpus.SPLITS] + \
        [fs.join(output, stem(name)) for name in (DEAD_LETTER_FILE, RECORDINGS_FILE)]
    return sinks.temp_folders(output, prefixes, run_id)


def _annotated_source(args):
    """--input recordings + --annotations → (recordings, files matched, labels, window
    rules, dead-letter records found before the pipeline, annotation counts)."""
    if not 0 < args.min_overlap <= 1:
        raise UserError(f"--min-overlap {args.min_overlap}: must be in (0, 1], e.g. 0.5")
    background = None if args.background.strip().lower() == "none" else args.background.strip()
    negatives = tuple(n.strip() for value in args.negative_label for n in value.split(",")
                      if n.strip())
    rules = window_labels.WindowRules(args.min_overlap, background, args.annotated_extent,
                                      negatives)
    _refuse_review_folder(args.annotations)
    found = corpus.list_annotated(fs.absolute(args.input), fs.absolute(args.annotations),
                                  args.label_column, args.annotation_encoding)
    verdicts = [t.table for t in found.tables if t.format.endswith(annotations.VERDICTS)]
    if verdicts and rules.extent == "full":
        raise UserError(f"--annotations {args.annotations}: {verdicts[0]} holds verdicts "
                        "('earmark review'), which say nothing of the time between the items "
                        "reviewed; pass --annotated-extent selections")
    if not found.recordings:
        raise UserError(f"--annotations {args.annotations}: no table matches a recording under "
                        f"--input {args.input} ({len(found.bad)} problems, e.g. "
                        f"{found.bad[0].detail if found.bad else 'no tables'}); name each table "
                        "after its recording (rec.flac <-> rec.Table.1.selections.txt) or give "
                        "a file column")
    dead = [{"path": b.source, "line": b.line, "stage": ANNOTATION_STAGE, "reason": b.reason,
             "detail": b.detail} for b in found.bad]
    dead += [{"path": r.path, "label": "", "stage": "match", "reason": "not_annotated",
              "detail": "no annotation table or row names this recording; annotate it (an "
                        "empty Raven table means no events) or move it out of --input"}
             for r in found.unannotated]
    dead += [{"path": r.path, "label": "", "stage": "match", "reason": "unusable_annotations",
              "detail": why} for r, why in found.unusable]
    dead += [{"path": r.path, "label": "", "stage": "match", "reason": "unsupported_extension",
              "detail": "neither audio nor an annotation table"} for r in found.not_audio]
    found.recordings = _one_spelling_of_rows(found.recordings)
    rows = [row for r in found.recordings for row in r.events]
    labels = {row.label for row in rows if not rules.is_negative(row.label)}
    # what a negative selection's window must be known not to hold: every label annotated,
    # and those `not_X` rows name (a round of verdicts that are all `no`)
    named = {rules.negated(row.label, sorted(labels)) for row in rows
             if rules.is_negative(row.label)} - {None}
    rules = dataclasses.replace(rules, event_labels=tuple(sorted(labels | named)))
    if any(rules.is_negative(row.label) for row in rows) or (background and rules.extent == "full"):
        labels.add(rules.negative_label)
    counts = {"per_table": [t.to_dict() for t in found.tables]}
    matched = len(found.recordings) + len(found.unannotated) + len(found.unusable) + \
        len(found.not_audio)
    return found.recordings, matched, sorted(labels), rules, dead, counts


def _one_spelling(counts: collections.Counter) -> dict:
    """`window_labels.one_spelling`, with a warning naming each label read as another."""
    merged = window_labels.one_spelling(counts)
    moved = [f"{l!r} ({counts[l]} rows) as {merged[l]!r} ({counts[merged[l]]})"
             for l in sorted(merged) if merged[l] != l]
    if moved:
        log.warning("prepare: labels written in more than one case are one label, spelled as "
                    "most rows spell it: %s; write them alike to silence this", ", ".join(moved))
    return merged


def _one_spelling_of_manifest_rows(recordings: list) -> list:
    """Manifest rows, their labels in one spelling each. (A folder corpus is listed inside
    the pipeline; `Snore/` beside `snore/` stays two folders.)"""
    merged = _one_spelling(collections.Counter(r.label for r in recordings if r.label))
    return [dataclasses.replace(r, label=merged[r.label]) if r.label in merged else r
            for r in recordings]


def _one_spelling_of_rows(recordings: list) -> list:
    """Annotated recordings, their rows' labels in one spelling each (negatives included:
    `Not_Snore` and `not_snore` are one)."""
    merged = _one_spelling(collections.Counter(e.label for r in recordings for e in r.events))
    if not merged:
        return recordings
    return [dataclasses.replace(r, events=tuple(dataclasses.replace(e, label=merged.get(e.label, e.label))
                                                for e in r.events)) for r in recordings]


def _refuse_review_folder(annotations_path: str) -> None:
    """An 'earmark review' folder as --annotations is refused: its Audacity tracks would read
    as events, and review.csv's unanswered rows would hide verdicts.csv's."""
    if annotations_path.lower().endswith(corpus.ANNOTATION_EXTENSIONS):
        return
    manifest = outputs.read_manifest(fs.absolute(annotations_path))
    if manifest and manifest.get("command") == "review":
        raise UserError(f"--annotations {annotations_path} is an 'earmark review' folder; pass "
                        "the table of verdicts in it (verdicts.csv saved from review.html, or "
                        "review.csv filled in), or its raven/ folder")


# why windows were left out of training, as prepare's summary says it (stats.json's
# windows_left_out keys); only the kinds that occurred are printed
WHY_LEFT_OUT = {
    window_labels.AMBIGUOUS: "ambiguous (touching an event too little, or a row that could not "
                             "be used)",
    window_labels.NO_BACKGROUND: "background (--background none)",
    window_labels.OUTSIDE_SELECTIONS: "outside every selection (--annotated-extent selections)",
    window_labels.NEGATES_SOME: "in negative selections that rule out some labels only (a `no` "
                                "on one label says nothing of the others)",
    splits.SPLIT_BOUNDARY: "across the edge of two splits' time (--split-by time)"}


def summarize(output: str) -> dict:
    """Read stats.json, print the summary table, and fail when no file could be used."""
    stats = fs.read_json(fs.join(output, STATS_FILE))
    lines = [f"{'split':<11} {'label':<20} {'files':>7} {'patches':>8} {'seconds':>10}"]
    for split, per_label in stats["splits"].items():
        for label, row in per_label.items():
            lines.append(f"{split:<11} {label:<20} {row['files']:>7} {row['patches']:>8} "
                         f"{row['seconds']:>10.1f}")
    lines.append(f"files: {stats['files_matched']} matched, {stats['files_ok']} ok, "
                 f"{stats['files_failed']} failed {stats['failures_by_reason'] or ''}".rstrip())
    left_out = {k: sum(s.get(k, 0) for s in stats.get("windows_left_out", {}).values())
                for k in WHY_LEFT_OUT}
    why = dict(WHY_LEFT_OUT, **({} if stats.get("annotations") else {
        window_labels.AMBIGUOUS: "at a clip's end (less than --min-overlap of the window "
                                 "inside the clip)"}))
    reasons = [f"{n} {why[kind]}" for kind, n in left_out.items() if n]
    if reasons:
        lines.append("windows left out of training: " + ", ".join(reasons))
    a = stats.get("annotations")
    if a:
        lines += annotation_summary_lines(a)
        lines += _partly_annotated_lines(output)
    print("\n".join(lines))
    if stats["files_ok"] == 0:
        top = max(stats["failures_by_reason"].items(), key=lambda kv: kv[1], default=("none", 0))
        raise UserError(f"all {stats['files_matched']} files failed (most often: {top[0]}); "
                        f"see {fs.join(output, DEAD_LETTER_FILE)}")
    return stats


def _partly_annotated_lines(output: str) -> list:
    """A warning naming the recordings annotated as whole (--annotated-extent full) that
    look partly annotated (`window_labels.looks_partly_annotated`), read from
    recordings.jsonl; [] when none do."""
    by_source = {}
    text = fs.read_bytes(fs.join(output, RECORDINGS_FILE)).decode("utf-8")
    for line in text.splitlines():
        r = json.loads(line) if line.strip() else None
        if r and r.get("annotated_extent", "full") == "full" and r.get("events") is not None:
            seen = by_source.setdefault(r["source"], (r["key"], r["duration_s"], []))
            seen[2].extend(r["events"])
    found = [(key, duration_s, gap) for key, duration_s, events in by_source.values()
             for gap in [window_labels.looks_partly_annotated(duration_s, events)] if gap]
    if not found:
        return []
    key, duration_s, (a, b) = max(found, key=lambda f: f[2][1] - f[2][0])
    return [f"warning: {len(found)} recording(s) look partly annotated: nothing is annotated "
            f"in at least half of each (e.g. {key}: from {progress.format_duration(a)} to "
            f"{progress.format_duration(b)} of {progress.format_duration(duration_s)}), and with "
            "--annotated-extent full (the default) that time "
            "trains as background; if it was not annotated, re-run with --annotated-extent "
            "selections (only what the tables select is known)"]


# the import summary prints every table up to this many, else those with problems
TABLES_PRINTED = 20


def annotation_summary_lines(a: dict) -> list:
    """stats.json `annotations` as lines: the totals, then one line per table (those with
    problems when there are many)."""
    left_out = (f", {a['events_left_out']} left out with their recordings"
                if a.get("events_left_out") else "")
    lines = [f"annotations: {a['tables']} tables, {a['read']} rows read, {a['events_used']} "
             f"events used{left_out}, {a['failed']} failed {a['failed_by_reason'] or ''}".rstrip()]
    tables = a.get("per_table", [])
    shown = tables if len(tables) <= TABLES_PRINTED else \
        [t for t in tables if t["failed_by_reason"] or t["recordings_left_out"]][:TABLES_PRINTED]
    for t in shown:
        how = f"{t['format'] or 'unreadable'}" + (f", {t['encoding']}" if t["encoding"] not in
                                                 ("", "utf-8", "utf-8-sig") else "")
        lines.append(f"  {t['table']} ({how}): {t['rows']} rows, {t['events']} events used, "
                     f"{t['events_left_out']} left out, failed {t['failed_by_reason'] or 0}; "
                     f"{t['recordings']} recordings annotated, {t['recordings_left_out']} left out")
    if len(shown) < len(tables):
        lines.append(f"  ... {len(tables) - len(shown)} more tables: see stats.json")
    return lines


def main(argv=None) -> dict:
    args, beam_args = build_arg_parser().parse_known_args(argv)
    run(argv)
    if fs.builds_template(beam_args):
        print(f"Dataflow template written; outputs will go to {args.output} when it runs")
        return {}
    return summarize(fs.absolute(args.output))
