"""Bottleneck cache: the frozen base's pooled features, computed once per example.

As in Inception's retrain.py: with the base frozen and no augmentation that changes its
input, every epoch would recompute the same features, so compute them once, store them,
and train the head on the store. A cache entry is keyed by everything that changes the
numbers: prepared data (content id), base, weights (value fingerprint), FeatureConfig,
input size and the adapter's normalization statistics.

Layout: `CACHE/bottlenecks/KEY/{split}-*.tfrecord.gz` (one Example per patch: `features`,
`label`, `recording_key`) and `KEY/meta.json`, written last, which marks it complete. The
Beam pipeline `pipelines/bottleneck_pipeline.py` writes the same layout.
"""
import dataclasses
import glob
import hashlib
import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from earmark.model import image_bases, progress
from earmark.model.adapter import SpectrogramToImage
from earmark.model.examples import utf8_strings

META_FILE = "meta.json"
PROGRESS_STEP = 512  # patches per model call between progress lines


@dataclasses.dataclass(frozen=True)
class EmbedderSpec:
    """All that is needed to rebuild the log-mel → pooled-features model on any worker."""
    base: str
    weights: str              # as given: imagenet | none | path | gs:// path
    input_px: int
    mean: float
    std: float
    frames: int
    mel_bins: int
    seed: int = 0
    pooling: str = "multiscale"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EmbedderSpec":
        return cls(**json.loads(text))

    @classmethod
    def for_data(cls, feature_config, stats, base: str, weights: str, input_px: int = 0,
                 seed: int = 0, pooling: str = "multiscale") -> "EmbedderSpec":
        """The spec of an image base over prepared log-mel patches (`feature_config`) with the
        adapter statistics `stats` (`InputStats` of the training patches); `input_px` 0: the
        base's default input size."""
        return cls(base=base, weights=weights,
                   input_px=input_px or image_bases.get_spec(base).default_input_px,
                   mean=stats.mean, std=stats.std, frames=feature_config.patch_frames,
                   mel_bins=feature_config.mel_bins, seed=seed, pooling=pooling)


def build_embedder(spec: EmbedderSpec, weights_info: image_bases.WeightsInfo = None):
    """Keras model [b, frames, mel_bins] log-mel → [b, features]; returns (embedder, base)."""
    import keras
    info = weights_info or image_bases.resolve_weights(spec.weights)
    base = image_bases.build_base(spec.base, spec.input_px, info, seed=spec.seed,
                                  pooling=spec.pooling)
    inputs = keras.Input((spec.frames, spec.mel_bins), name="log_mel")
    mode = image_bases.get_spec(spec.base).preprocess_mode
    image = SpectrogramToImage(spec.mean, spec.std, spec.input_px, mode, name="to_image")(inputs)
    return keras.Model(inputs, base(image), name="embedder"), base


def cache_key(data_hash: str, feature_config_hash: str, spec: EmbedderSpec,
              weights_fingerprint: str) -> str:
    parts = dict(data=data_hash, features=feature_config_hash, base=spec.base,
                 weights=weights_fingerprint, input_px=spec.input_px, pooling=spec.pooling,
                 mean=round(spec.mean, 6), std=round(spec.std, 6))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def embedding_cache_key(data_hash: str, feature_config_hash: str, base_name: str,
                        weights_checksum: str) -> str:
    """Cache key of an audio-pretrained embedding base (`model.audio_bases`): data,
    windowing, base and the sha256 of the weights actually loaded."""
    parts = dict(data=data_hash, features=feature_config_hash, base=base_name,
                 weights=weights_checksum)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def cache_dir(cache_root: str, key: str) -> str:
    return os.path.join(cache_root, "bottlenecks", key)


@dataclasses.dataclass(frozen=True)
class CacheEntry:
    """One bottleneck cache entry: its key, its folder and the meta.json fields that say what
    it holds (`load_or_compute` and the Beam pipeline add feature_dim and the split counts)."""
    key: str
    directory: str
    meta: dict


def image_cache_entry(cache_root: str, prepared, spec: EmbedderSpec, base) -> CacheEntry:
    """The cache entry of an image base (`build_embedder(spec)`'s `base`, whose weights'
    value fingerprint is part of the key) over prepared data (`data.Prepared`): the one place
    its key, folder and meta are made, for `earmark train` and the Beam pipeline alike."""
    key = cache_key(prepared.data_hash, prepared.feature_config.hash(), spec,
                    image_bases.weights_fingerprint(base))
    return CacheEntry(key, cache_dir(cache_root, key),
                      {"key": key, "embedder": dataclasses.asdict(spec), "data": prepared.root,
                       "data_hash": prepared.data_hash})


def embedding_cache_entry(cache_root: str, prepared, base_name: str, weights: str,
                          checksum: str) -> CacheEntry:
    """The cache entry of an audio-pretrained embedding base (`model.audio_bases`)
    loaded with `weights` (pretrained | random), whose weights hash to `checksum`."""
    key = embedding_cache_key(prepared.data_hash, prepared.feature_config.hash(), base_name,
                              checksum)
    return CacheEntry(key, cache_dir(cache_root, key),
                      {"key": key,
                       "embedder": {"base": base_name, "weights": weights, "checksum": checksum},
                       "data": prepared.root, "data_hash": prepared.data_hash})


def is_complete(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, META_FILE))


def embed(embedder, log_mels: np.ndarray, batch_size: int = 64, name: str = "bottlenecks") -> np.ndarray:
    """Pooled features of every patch, in order, float32 [n, features], `batch_size` patches
    per call of one graph traced once per model (Keras' predict traces again for each new
    shape: every split's last, partial batch)."""
    if len(log_mels) == 0:
        return np.zeros((0, embedder.output_shape[-1]), np.float32)
    return _in_steps(lambda x: predict(embedder, x, batch_size), log_mels, name)


def predict(model, inputs, batch_size: int = 64) -> np.ndarray:
    """`model` over `inputs`, `batch_size` rows per call of `inference_fn(model)`: what
    Keras' `predict` with that batch size gives, without its tracing per new shape. A model
    that is not Keras' (the 8-bit path, `int8.LogMelPath`) runs its own `predict`."""
    import keras
    if not isinstance(model, keras.Model):
        return model.predict(np.asarray(inputs, np.float32), batch_size=batch_size)
    fn, inputs = inference_fn(model), np.asarray(inputs, np.float32)
    if len(inputs) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    return np.concatenate([np.asarray(fn(inputs[i:i + batch_size]))
                           for i in range(0, len(inputs), batch_size)])


def inference_fn(model):
    """`model(x, training=False)` as one tf.function for any batch size, made once per model
    (it reads the model's variables as they are when called: fine-tuned weights included)."""
    fn = getattr(model, "_earmark_inference_fn", None)
    if fn is None:
        spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        model._earmark_inference_fn = fn
    return fn


def _in_steps(fn, inputs: np.ndarray, name: str) -> np.ndarray:
    """`fn` over `inputs` in steps of PROGRESS_STEP rows, logging progress with an ETA."""
    meter = progress.Progress(name, "patches", total=len(inputs))
    parts = []
    for i in range(0, len(inputs), PROGRESS_STEP):
        parts.append(np.asarray(fn(inputs[i:i + PROGRESS_STEP]), np.float32))
        meter.update(len(parts[-1]))
    return np.concatenate(parts)


def feature_example(features: np.ndarray, label: int, recording_key: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "features": tf.train.Feature(float_list=tf.train.FloatList(value=features)),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        "recording_key": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[recording_key.encode()])),
    })).SerializeToString()


def write_split(directory: str, split: str, features, labels, keys) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{split}-00000-of-00001.tfrecord.gz")
    with tf.io.TFRecordWriter(path + ".part", tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for f, l, k in zip(features, labels, keys):
            w.write(feature_example(f, l, k))
    os.replace(path + ".part", path)


def write_meta(directory: str, meta: dict) -> None:
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)


def read_split(directory: str, split: str):
    """→ (features [n, d] float32, labels [n] int64, recording keys [n] str)."""
    with open(os.path.join(directory, META_FILE)) as f:
        dim = json.load(f)["feature_dim"]
    return read_split_with_dim(directory, split, dim)


def read_split_with_dim(directory: str, split: str, dim: int):
    spec = {"features": tf.io.FixedLenFeature([dim], tf.float32),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "recording_key": tf.io.FixedLenFeature([], tf.string)}
    files = sorted(glob.glob(os.path.join(directory, f"{split}-*.tfrecord.gz")))
    feats, labels, keys = [np.zeros((0, dim), np.float32)], [np.zeros(0, np.int64)], [np.zeros(0, str)]
    if files:
        ds = (tf.data.TFRecordDataset(files, compression_type="GZIP")
              .map(lambda s: tf.io.parse_single_example(s, spec)).batch(4096))
        for b in ds.as_numpy_iterator():
            feats.append(b["features"]), labels.append(b["label"])
            keys.append(utf8_strings(b["recording_key"]))
    return np.concatenate(feats), np.concatenate(labels), np.concatenate(keys)


def concatenate(parts: list) -> dict:
    """Several bases' {split: (features, labels, keys)} of the same rows → one, features
    side by side (an ensemble's members); the rows must agree, in the same order."""
    out = {}
    for split in parts[0]:
        rows = [p[split] for p in parts]
        for other in rows[1:]:
            if not (np.array_equal(other[1], rows[0][1]) and np.array_equal(other[2], rows[0][2])):
                raise ValueError(f"cache entries disagree on the {split} rows")
        out[split] = (np.concatenate([r[0] for r in rows], axis=1), rows[0][1], rows[0][2])
    return out


def load_or_compute(directory: str, embedder, splits: dict, meta: dict, batch_size: int = 64,
                    log=None):
    """`splits`: name → SplitArrays. Returns ({name: (features, labels, keys)}, computed?).
    Reads the cache when complete, else embeds every split and writes it. `embedder` is a
    Keras log-mel → features model, or an embedding base (`.embed(waveform windows)`).
    `log(line)` gets the cache hit and per-split timings (default: this module's logger)."""
    log = log or logging.getLogger("earmark.bottleneck").info
    if is_complete(directory):
        log(f"bottleneck cache hit: {directory}")
        return {s: read_split(directory, s) for s in splits}, False
    out = {}
    for name, arrays in splits.items():
        t0 = time.monotonic()
        if arrays.waveform is not None:
            feats = _in_steps(embedder.embed, arrays.waveform, f"bottlenecks {name}") if len(arrays) \
                else np.zeros((0, embedder.spec.embedding_dim), np.float32)
        else:
            feats = embed(embedder, arrays.log_mel, batch_size, f"bottlenecks {name}")
        secs = time.monotonic() - t0
        log(f"bottlenecks {name}: {len(feats)} patches in {secs:.1f} s "
            f"({len(feats) / max(secs, 1e-9):.0f} patches/s)")
        write_split(directory, name, feats, arrays.label, arrays.recording_key)
        out[name] = (feats, arrays.label, arrays.recording_key)
    dim = next(iter(out.values()))[0].shape[1]
    write_meta(directory, {**meta, "feature_dim": int(dim), "splits": {
        s: int(len(v[1])) for s, v in out.items()}})
    return out, True
