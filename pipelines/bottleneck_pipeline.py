"""Bottleneck features as a Beam pipeline: prepared TFRecords → pooled base features.

The same computation as `model.bottleneck` (same `EmbedderSpec`, same embedder, same
output layout, and the cache entry `model.bottleneck.image_cache_entry` makes), for prepared
sets too large for one process. `earmark train --bottleneck-runner beam` hands
`compute_cache` to `model.train.train`; on its own:

    python -m earmark.pipelines.bottleneck_pipeline --data prepared/ --base vgg16 \\
        --weights ../shared/models/vgg16_hed_notop.weights.h5 [--cache-dir DIR] [beam flags]

A later `earmark train` with the same data, base, weights, input size and pooling finds the
cache complete and does not recompute it.
"""
import json
import os

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from earmark.model import base_registry, bottleneck, data, image_bases
from earmark.model.adapter import InputStats
from earmark.model.features import FeatureConfig
from earmark.pipelines import flags, local_runner


class EmbedBatches(beam.DoFn):
    """Batches of serialized patch Examples → serialized feature Examples."""

    def __init__(self, spec_json: str, config_json: str):
        self._spec_json, self._config_json = spec_json, config_json

    def setup(self):
        from earmark.model.examples import parse_example
        import tensorflow as tf
        self._tf = tf
        self._parse = parse_example
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))
        self._embedder, _ = bottleneck.build_embedder(bottleneck.EmbedderSpec.from_json(self._spec_json))
        self._count = beam.metrics.Metrics.counter("bottleneck", "patches")

    def process(self, batch):
        parsed = [self._parse(s, self._config) for s in batch]
        log_mel = np.stack([p["log_mel"].numpy() for p in parsed])
        feats = bottleneck.embed(self._embedder, log_mel, batch_size=len(batch))
        self._count.inc(len(batch))
        for p, f in zip(parsed, feats):
            yield bottleneck.feature_example(f, int(p["label"].numpy()),
                                             p["recording_key"].numpy().decode())


def build_pipeline(p, prepared_root: str, out_dir: str, spec, config, splits, batch_size=64):
    for split in splits:
        files = data.split_files(prepared_root, split)
        if not files:
            continue
        _ = (p
             | f"Read{split.title()}" >> beam.io.ReadFromTFRecord(
                 os.path.join(prepared_root, f"{split}-*{data.SHARD_SUFFIX}"),
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP)
             | f"Batch{split.title()}" >> beam.BatchElements(min_batch_size=batch_size,
                                                             max_batch_size=batch_size)
             | f"Embed{split.title()}" >> beam.ParDo(EmbedBatches(spec.to_json(), config.to_json()))
             | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                 os.path.join(out_dir, split), file_name_suffix=data.SHARD_SUFFIX,
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP))


def run_pipeline(prepared_root: str, out_dir: str, spec, splits, meta: dict, beam_args=None,
                 feature_dim: int = None):
    """Run the pipeline into `out_dir`, then write meta.json (which marks the cache complete)."""
    config = data.open_prepared(prepared_root).feature_config
    if feature_dim is None:
        embedder, _ = bottleneck.build_embedder(spec)
        feature_dim = int(embedder.output_shape[-1])
    os.makedirs(out_dir, exist_ok=True)
    with local_runner.new_pipeline(PipelineOptions(beam_args or [])) as p:
        build_pipeline(p, prepared_root, out_dir, spec, config, splits)
    counts = {s: int(len(bottleneck.read_split_with_dim(out_dir, s, feature_dim)[1]))
              for s in splits}
    bottleneck.write_meta(out_dir, {**meta, "feature_dim": feature_dim, "splits": counts,
                                    "runner": "beam"})


def compute_cache(prepared_root: str, entry: bottleneck.CacheEntry, spec, splits,
                  feature_dim: int, beam_args=None) -> None:
    """The cache entry `entry` (`model.bottleneck.image_cache_entry`) computed by this
    pipeline: what `earmark train --bottleneck-runner beam` hands to `model.train.train` as
    its `compute_bottlenecks`."""
    run_pipeline(prepared_root, entry.directory, spec, list(splits), entry.meta, beam_args,
                 feature_dim)


def main(argv=None) -> str:
    p = flags.ArgumentParser(
        prog="python -m earmark.pipelines.bottleneck_pipeline",
        description="Compute the bottleneck cache of a prepared set with Beam.")
    p.add_argument("--data", required=True)
    p.add_argument("--base", default=image_bases.DEFAULT_BASE, choices=base_registry.names("image"))
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--input-size", type=int, default=0)
    p.add_argument("--pooling", default="multiscale", choices=image_bases.POOLINGS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=image_bases.CACHE_ROOT)
    args, beam_args = p.parse_known_args(argv)
    prepared = data.open_prepared(args.data)
    stats = InputStats.from_array(data.read_split(prepared, "train").log_mel)
    spec = bottleneck.EmbedderSpec.for_data(prepared.feature_config, stats, args.base,
                                            args.weights, args.input_size, args.seed,
                                            args.pooling)
    embedder, base = bottleneck.build_embedder(spec)
    entry = bottleneck.image_cache_entry(args.cache_dir, prepared, spec, base)
    if bottleneck.is_complete(entry.directory):
        print(f"bottleneck cache already complete: {entry.directory}")
        return entry.directory
    compute_cache(prepared.root, entry, spec, ["train", "validation"],
                  int(embedder.output_shape[-1]), beam_args)
    print(f"bottleneck cache written: {entry.directory}")
    return entry.directory


if __name__ == "__main__":
    main()
