"""`earmark prepare`: a corpus of labeled recordings → sharded log-mel patch TFRecords
(or, with `--base` an embedding base, raw waveform windows at that base's rate and length).

    MatchFiles (or manifest rows) → Reshuffle → DecodeToPatches → split → WriteToTFRecord

Beside the shards: `features.json` (FeatureConfig + label vocabulary), `stats.json`
(files, patches and seconds per label per split, failures by reason) and
`dead_letter.jsonl` (one `{path, stage, reason, detail}` line per file that failed).
"""
import argparse
import json
import logging
import os
import uuid

import apache_beam as beam
from apache_beam.io import fileio

from model import progress
from model.errors import UserError
from model.features import FeatureConfig, RESAMPLE_QUALITIES
from pipelines import corpus, fs

log = logging.getLogger("earmark.prepare")

FEATURES_FILE = "features.json"
STATS_FILE = "stats.json"
DEAD_LETTER_FILE = "dead_letter.jsonl"
SHARD_SUFFIX = ".tfrecord.gz"


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="earmark prepare",
        description="Turn labeled recordings into sharded log-mel spectrogram TFRecords.",
        epilog="examples:\n"
               "  earmark prepare --input corpus/ --output prepared/\n"
               "  earmark prepare --manifest labels.csv --output gs://bucket/prepared \\\n"
               "      --direct_num_workers=2 --direct_running_mode=multi_processing\n"
               "Any Apache Beam option (--runner, --project, --region, ...) passes through.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder of <label>/ sub-folders, or a glob; local or gs://")
    src.add_argument("--manifest", help="CSV with columns path,label[,group]; local or gs://")
    p.add_argument("--output", required=True, help="output folder, local or gs://")
    p.add_argument("--split", default="80/10/10",
                   help="train/validation/test fractions (default 80/10/10)")
    p.add_argument("--base", default=None,
                   help="the base the data is for: an embedding base (musicnn_msd, musicnn_mtt, "
                        "birdnet) takes raw waveform windows at its own sample rate and window "
                        "length; an image base or none: log-mel patches (default)")
    p.add_argument("--patch-hop-seconds", type=float, default=None,
                   help="hop between patches (default: 0.96 for log-mel, no overlap; half the "
                        "window for an embedding base)")
    p.add_argument("--resample-quality", default=FeatureConfig.resample_quality,
                   choices=RESAMPLE_QUALITIES, help="soxr quality (default HQ)")
    p.add_argument("--decoder", default="soundfile", choices=("soundfile", "tfio"),
                   help="audio decoder (default soundfile: measured 6x faster than tfio)")
    p.add_argument("--num-shards", type=int, default=0,
                   help="shards per split (default 0: the runner decides)")
    return p


class DecodeToPatches(beam.DoFn):
    """Recording → (split, serialized Example) per patch; failures → dead letter."""

    DEAD_LETTER = "dead_letter"
    FILE_OK = "file_ok"

    def __init__(self, config_json: str, labels, fractions, decoder: str, files_matched: int,
                 single_process: bool = True):
        self._config_json = config_json
        # progress: a total (and so an ETA) only where this process does the whole run
        self._progress_total = files_matched if single_process else None
        self._run_id = uuid.uuid4().hex
        self._labels = list(labels)
        self._fractions = tuple(fractions)
        self._decoder = decoder
        self._files_ok = beam.metrics.Metrics.counter("prepare", "files_ok")
        self._files_failed = beam.metrics.Metrics.counter("prepare", "files_failed")
        self._patches = beam.metrics.Metrics.counter("prepare", "patches")

    def setup(self):
        from model.frontend import Frontend
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))
        self._config_hash = self._config.hash()
        self._frontend = Frontend(self._config)
        self._label_index = {name: i for i, name in enumerate(self._labels)}
        self._tracker = progress.tracker(self._run_id, "prepare", "files", self._progress_total)

    def process(self, recording: corpus.Recording):
        from model import audio
        from model.examples import make_example
        stage = "read"
        try:
            if recording.label not in self._label_index:
                raise audio.AudioError("unknown_label", f"{recording.label!r} is not in features.json")
            ext = os.path.splitext(recording.path)[1].lower()
            if ext not in corpus.AUDIO_EXTENSIONS:
                raise audio.AudioError("unsupported_extension",
                                       f"{ext or 'no extension'}; expected one of "
                                       + " ".join(corpus.AUDIO_EXTENSIONS))
            try:
                data = fs.read_bytes(recording.path)
            except Exception as e:
                raise audio.AudioError("read_error", f"{type(e).__name__}: {e}"[:300]) from None
            stage = "decode"
            waveform, rate, channels = audio.load_waveform(
                data, self._config.sample_rate_hz, recording.path,
                self._config.resample_quality, self._decoder)
            stage = "features"
            patches, starts, padded = self._frontend.patches(waveform)
        except audio.AudioError as e:
            yield from self._dead_letter(recording, stage, e.reason, e.detail)
            return
        except Exception as e:  # never lose a file to an unexpected error: account for it
            yield from self._dead_letter(recording, stage, "unexpected_error",
                                         f"{type(e).__name__}: {e}"[:300])
            return
        split = corpus.assign_split(recording.key, self._fractions)
        duration_s = len(waveform) / self._config.sample_rate_hz
        index = self._label_index[recording.label]
        for patch, start in zip(patches, starts):
            end = min(start + self._config.patch_seconds, duration_s)
            yield split, make_example(patch, index, recording.label, recording.path,
                                      recording.key, float(start), float(end), padded,
                                      self._config_hash)
        self._files_ok.inc()
        self._patches.inc(len(patches))
        self._progress(len(patches))
        yield beam.pvalue.TaggedOutput(self.FILE_OK, {
            "split": split, "label": recording.label, "patches": len(patches),
            "seconds": duration_s})

    def _dead_letter(self, recording, stage, reason, detail):
        self._files_failed.inc()
        beam.metrics.Metrics.counter("prepare", f"failed_{reason}").inc()
        self._progress(0)
        yield beam.pvalue.TaggedOutput(self.DEAD_LETTER, {
            "path": recording.path, "label": recording.label, "stage": stage,
            "reason": reason, "detail": detail})

    def _progress(self, patches: int):
        self._tracker.update(1)


def _sum_tuples(rows):
    return tuple(sum(col) for col in zip(*rows)) if rows else (0, 0, 0.0)


def _write_stats(_, per_split_label, failures, path, files_matched):
    splits = {s: {} for s in corpus.SPLITS}
    for (split, label), (files, patches, seconds) in sorted(per_split_label):
        splits[split][label] = {"files": files, "patches": patches, "seconds": round(seconds, 3)}
    failed = dict(sorted(failures))
    files_ok = sum(v["files"] for s in splits.values() for v in s.values())
    stats = {
        "files_matched": files_matched,
        "files_ok": files_ok,
        "files_failed": sum(failed.values()),
        "failures_by_reason": failed,
        "patches": sum(v["patches"] for s in splits.values() for v in s.values()),
        "splits": splits,
    }
    fs.write_json(path, stats)


def build_pipeline(p, source, output, config, labels, fractions, decoder, files_matched,
                   num_shards):
    """Wire the prepare transforms onto pipeline `p`. `source` is a (glob, root) pair,
    matched inside the pipeline, or a list of manifest `Recording`s."""
    if isinstance(source, tuple):
        pattern, root = source
        recordings = (
            p
            | "MatchFiles" >> fileio.MatchFiles(pattern)
            | "ToRecording" >> beam.Map(lambda m, root=root: corpus.Recording(
                m.path, corpus.label_from_path(m.path), corpus.relative_key(m.path, root))))
    else:
        recordings = p | "ManifestRows" >> beam.Create(source)
    results = (
        recordings
        | "Reshuffle" >> beam.Reshuffle()
        | "DecodeToPatches" >> beam.ParDo(DecodeToPatches(
            config.to_json(), labels, fractions, decoder, files_matched,
            fs.single_process(p.options))).with_outputs(
                DecodeToPatches.DEAD_LETTER, DecodeToPatches.FILE_OK, main="examples"))
    by_split = results.examples | "BySplit" >> beam.Partition(
        lambda kv, n: corpus.SPLITS.index(kv[0]), len(corpus.SPLITS))
    for split, examples in zip(corpus.SPLITS, by_split):
        _ = (examples
             | f"Values{split.title()}" >> beam.Values()
             | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                 fs.join(output, split), file_name_suffix=SHARD_SUFFIX,
                 num_shards=num_shards, compression_type=beam.io.filesystem.CompressionTypes.GZIP))
    dead = results[DecodeToPatches.DEAD_LETTER]
    _ = (dead
         | "DeadLetterJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
         | "WriteDeadLetter" >> beam.io.WriteToText(
             fs.join(output, "dead_letter"), file_name_suffix=".jsonl",
             num_shards=1, shard_name_template=""))
    per_split_label = (
        results[DecodeToPatches.FILE_OK]
        | "KeySplitLabel" >> beam.Map(lambda r: ((r["split"], r["label"]),
                                                 (1, r["patches"], r["seconds"])))
        | "SumPerSplitLabel" >> beam.CombinePerKey(_sum_tuples))
    failures = dead | "FailureReason" >> beam.Map(lambda d: d["reason"]) | "CountReasons" >> beam.combiners.Count.PerElement()
    _ = (p
         | "StatsTrigger" >> beam.Create([None])
         | "WriteStats" >> beam.Map(_write_stats, beam.pvalue.AsList(per_split_label),
                                    beam.pvalue.AsList(failures), fs.join(output, STATS_FILE),
                                    files_matched))


def feature_config_for(base: str, patch_hop_seconds: float = None,
                       resample_quality: str = FeatureConfig.resample_quality) -> FeatureConfig:
    """The FeatureConfig that `base` trains on: an embedding base's waveform windows, or the
    log-mel default (image bases, or no base)."""
    from model import bases, embedding_bases
    from model.features import embedding_base_config
    base = embedding_bases.canonical(base)
    if base is not None and base not in embedding_bases.SPECS and base not in bases.BASES:
        raise UserError(f"--base {base!r}: choose one of "
                        f"{', '.join(sorted(bases.BASES) + sorted(embedding_bases.SPECS))}")
    try:
        if base in embedding_bases.SPECS:
            return embedding_base_config(embedding_bases.SPECS[base], patch_hop_seconds,
                                         resample_quality)
        return FeatureConfig(patch_hop_seconds=patch_hop_seconds or FeatureConfig.patch_hop_seconds,
                             resample_quality=resample_quality)
    except ValueError as e:
        raise UserError(f"bad feature setting: {e}") from None


def run(argv=None, save_main_session=True, test_pipeline=None):
    """Parse flags, list the corpus, write features.json, run the pipeline; → PipelineResult."""
    args, beam_args = build_arg_parser().parse_known_args(argv)
    fs.check_beam_flags(beam_args, "earmark prepare")
    options = fs.pipeline_options(beam_args, save_main_session)

    fractions = corpus.parse_fractions(args.split)
    config = feature_config_for(args.base, args.patch_hop_seconds, args.resample_quality)
    output = fs.absolute(args.output)
    if args.manifest:
        manifest = fs.absolute(args.manifest)
        recordings = corpus.read_manifest(manifest)
        source, files_matched = recordings, len(recordings)
    else:
        input_path = fs.absolute(args.input)
        recordings, pattern, root = corpus.list_input(input_path)
        source, files_matched = (pattern, root), len(recordings)
    labels = sorted({r.label for r in recordings})
    log.info("prepare: %d files matched, %d labels: %s", files_matched, len(labels),
             ", ".join(labels))

    fs.makedirs(output)
    fs.write_json(fs.join(output, FEATURES_FILE), {
        "feature_config": config.to_dict(),
        "feature_config_hash": config.hash(),
        "labels": labels,
        "split_fractions": dict(zip(corpus.SPLITS, fractions)),
        "source": args.manifest or args.input,
        "example_schema": "see README: Prepared data",
    })
    p = test_pipeline or beam.Pipeline(options=options)
    build_pipeline(p, source, output, config, labels, fractions, args.decoder, files_matched,
                   args.num_shards)
    result = p.run()
    if not fs.builds_template(options):
        result.wait_until_finish()
    return result


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
    print("\n".join(lines))
    if stats["files_ok"] == 0:
        top = max(stats["failures_by_reason"].items(), key=lambda kv: kv[1], default=("none", 0))
        raise UserError(f"all {stats['files_matched']} files failed (most often: {top[0]}); "
                        f"see {fs.join(output, DEAD_LETTER_FILE)}")
    return stats


def main(argv=None) -> dict:
    args, beam_args = build_arg_parser().parse_known_args(argv)
    run(argv)
    if fs.builds_template(beam_args):
        print(f"Dataflow template written; outputs will go to {args.output} when it runs")
        return {}
    return summarize(fs.absolute(args.output))
