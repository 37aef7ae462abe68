"""The tf.train.Example schema of prepared patches (written by `prepare`, read by `train`).
One example = one patch of one recording: a log-mel patch (`log_mel`), or for a waveform
FeatureConfig (embedding bases) a raw mono window (`waveform`)."""
import math

import numpy as np
import tensorflow as tf

from earmark.model.features import FeatureConfig


def _bytes(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() if isinstance(v, str) else v]))


def _floats(v):
    """A FloatList feature parsed from its packed wire form (field 1: a length, then
    little-endian float32s): the bytes FloatList(value=v) serializes to, without converting
    each value through Python (20-32x faster per example: benchmarks/example_encoding.py)."""
    data = np.asarray(v, dtype="<f4").tobytes()
    return tf.train.Feature(float_list=tf.train.FloatList.FromString(
        b"\x0a" + _varint(len(data)) + data))


def _varint(n: int) -> bytes:
    """Protocol buffers' base-128 varint of a non-negative int."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ints(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=v))


def make_example(patch, label_indices, label_names, source: str, recording_key: str,
                 start_s: float, end_s: float, padded: bool, config_hash: str) -> bytes:
    """Serialize one [frames, mel_bins] log-mel patch or [samples] waveform window (stored
    as `waveform`) and its provenance. A window may carry several labels (overlapping
    events): `label`/`label_name` hold the first, `labels` all of them."""
    return tf.train.Example(features=tf.train.Features(feature={
        ("waveform" if patch.ndim == 1 else "log_mel"): _floats(patch.reshape(-1)),
        "shape": _ints(list(patch.shape)),
        "label": _ints([label_indices[0]]),
        "labels": _ints(list(label_indices)),
        "label_name": _bytes(label_names[0]),
        "source": _bytes(source),
        "recording_key": _bytes(recording_key),
        "start_s": _floats([start_s]),
        "end_s": _floats([end_s]),
        "padded": _ints([int(padded)]),
        "feature_config_hash": _bytes(config_hash),
    })).SerializeToString()


def feature_spec(config: FeatureConfig) -> dict:
    """`tf.io.parse_single_example` spec for the schema above."""
    shape = config.patch_shape
    size = math.prod(shape)
    return {
        config.representation: tf.io.FixedLenFeature([size], tf.float32),
        "shape": tf.io.FixedLenFeature([len(shape)], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "labels": tf.io.VarLenFeature(tf.int64),
        "label_name": tf.io.FixedLenFeature([], tf.string),
        "source": tf.io.FixedLenFeature([], tf.string),
        "recording_key": tf.io.FixedLenFeature([], tf.string),
        "start_s": tf.io.FixedLenFeature([], tf.float32),
        "end_s": tf.io.FixedLenFeature([], tf.float32),
        "padded": tf.io.FixedLenFeature([], tf.int64),
        "feature_config_hash": tf.io.FixedLenFeature([], tf.string),
    }


def parse_example(serialized, config: FeatureConfig) -> dict:
    """Serialized example → dict of tensors, `log_mel` reshaped to [frames, mel_bins]
    (`waveform` windows stay [samples]), `labels` a dense vector of label indices."""
    parsed = tf.io.parse_single_example(serialized, feature_spec(config))
    labels = tf.sparse.to_dense(parsed["labels"])
    # data prepared before multi-label windows existed has `label` only
    parsed["labels"] = tf.cond(tf.size(labels) > 0, lambda: labels,
                               lambda: tf.reshape(parsed["label"], [1]))
    if not config.is_waveform:
        parsed["log_mel"] = tf.reshape(parsed["log_mel"], config.patch_shape)
    return parsed


def utf8_strings(values) -> np.ndarray:
    """String features as numpy gives them (an object array of bytes) → a str array, decoded
    as UTF-8: the encoding `make_example` writes. numpy's own `.astype(str)` decodes ASCII
    and fails on a name such as `ronflé_1.flac`."""
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values],
                    dtype=str)
