"""tf.data reading of prepared TFRecords (`earmark prepare` output) and training augmentation.

No Beam here: training runs where Beam is absent. A split is small enough to hold as
numpy arrays on one machine for the head (features) and for the sets this project trains on;
`pipelines/bottleneck_pipeline.py` is the route for sets that are not.
"""
import dataclasses
import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from earmark.model.data_files import (FEATURES_FILE, RECORDINGS_FILE, SHARD_SUFFIX, SPLITS,  # noqa: F401
                                     STATS_FILE)
from earmark.model import file_kinds
from earmark.model.errors import UserError
from earmark.model.examples import parse_example, utf8_strings
from earmark.model.features import FeatureConfig
from earmark.model.train_config import AugmentConfig


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A prepared-data folder: its label vocabulary, FeatureConfig and a content id."""
    root: str
    labels: tuple
    feature_config: FeatureConfig
    data_hash: str
    background_labels: tuple = ()  # labels of "nothing to report" (never written as segments)
    annotated: bool = False        # long annotated recordings (else labeled clips)
    # partly annotated recordings (`--annotated-extent selections`): the labels its
    # background windows (negative selections) are known not to hold; None otherwise
    negatives_rule_out: tuple = None


@dataclasses.dataclass(frozen=True)
class SplitArrays:
    """One split in memory; row i of every array is example i."""
    log_mel: np.ndarray         # [n, frames, mel_bins] float32 (None for waveform configs)
    label: np.ndarray           # [n] int64 index into Prepared.labels (a window's first label)
    recording_key: np.ndarray   # [n] str
    source: np.ndarray          # [n] str
    start_s: np.ndarray         # [n] float32
    waveform: np.ndarray = None  # [n, patch_samples] float32 (waveform configs only)
    multi_hot: np.ndarray = None  # [n, labels] float32: every label of each window

    @property
    def is_multi_label(self) -> bool:
        """True when some window carries more than one label (overlapping events)."""
        return self.multi_hot is not None and bool((self.multi_hot.sum(axis=1) > 1).any())

    @property
    def patches(self) -> np.ndarray:
        """The model input of each example: log-mel patches or waveform windows."""
        return self.log_mel if self.waveform is None else self.waveform

    def __len__(self):
        return len(self.label)


def _check_file(root: str, path: str, max_bytes: int = None) -> None:
    """A file of the --data folder `root` that exists, before it is opened: a FIFO, a device
    or a folder in its place is a one-line UserError, and so is one over `max_bytes` (a
    gs:// object's size from its metadata)."""
    name = os.path.basename(path)
    subject = f"--data {root}: {name}"
    fix = "point --data at the --output folder of 'earmark prepare', or re-run it"
    if path.startswith("gs://"):
        if max_bytes is not None:
            file_kinds.check_size(subject, tf.io.gfile.stat(path).length, max_bytes, name, fix)
        return
    file_kinds.check_regular_file(path, subject, max_bytes, name, fix)


def split_files(root: str, split: str) -> list:
    """The shards of one split: exactly those the prepare run that wrote the folder lists in
    `stats.json` (`shards`), so shards of any other run never mix in; for a folder prepared
    before stats.json listed them, every `{split}-*` shard there."""
    stats_path = os.path.join(root, STATS_FILE)
    if tf.io.gfile.exists(stats_path):
        _check_file(root, stats_path, file_kinds.MAX_LIST_BYTES)
        with tf.io.gfile.GFile(stats_path) as f:
            shards = json.load(f).get("shards")
        if shards is not None:
            return sorted(os.path.join(root, name) for name in shards.get(split, []))
    # listed, not globbed: the folder's own name is data (it may hold `[` or `*`)
    names = tf.io.gfile.listdir(root) if tf.io.gfile.isdir(root) else []
    return sorted(os.path.join(root, n) for n in names
                  if n.startswith(f"{split}-") and n.endswith(SHARD_SUFFIX))


def open_prepared(root: str) -> Prepared:
    """Read `features.json`; UserError when `root` is not a prepared-data folder."""
    path = os.path.join(root, FEATURES_FILE)
    if not tf.io.gfile.exists(path):
        raise UserError(f"--data {root}: no {FEATURES_FILE} there; point it at the --output "
                        "folder of 'earmark prepare'")
    _check_file(root, path, file_kinds.MAX_JSON_BYTES)
    with tf.io.gfile.GFile(path) as f:
        meta = json.load(f)
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for split in SPLITS:
        for shard in split_files(root, split):
            _check_file(root, shard)  # a FIFO in a shard's place would block tf.data for good
            h.update(f"{os.path.basename(shard)}:{tf.io.gfile.stat(shard).length}".encode())
    background = tuple(meta.get("background_labels", ()))
    annotations = meta.get("annotations") or {}
    rule_out = None
    if annotations.get("annotated_extent") == "selections":
        # folders prepared before `event_labels` was written: their negatives ruled out
        # every label of the folder
        rule_out = tuple(annotations.get("event_labels",
                                         [l for l in meta["labels"] if l not in background]))
    return Prepared(root, tuple(meta["labels"]), FeatureConfig.from_dict(meta["feature_config"]),
                    h.hexdigest()[:16], background, bool(annotations), rule_out)


@dataclasses.dataclass(frozen=True)
class RecordingEvents:
    """One prepared recording, or the stretch of one that a split holds (`model.splits`):
    where it is, its split, where the stretch starts and how long it is, and its events
    there, in seconds from `offset_s` (for a labeled clip, one event spanning the clip)."""
    key: str
    source: str
    split: str
    duration_s: float
    events: tuple  # model.events.Event
    offset_s: float = 0.0
    whole: bool = True   # False: a stretch of the recording

    @property
    def name(self) -> str:
        """The key, and the stretch (`key@start-end`) when it is not the whole recording."""
        return self.key if self.whole else \
            f"{self.key}@{self.offset_s:g}-{self.offset_s + self.duration_s:g}"


def read_recordings(prepared: Prepared, split: str) -> list:
    """The fully annotated recordings of one split from `recordings.jsonl`, sorted by key
    ([] when the folder predates that file). Partly annotated ones (`--annotated-extent
    selections`) are left out: their unselected time may hold events no one marked."""
    from earmark.model.events import Event
    path = os.path.join(prepared.root, RECORDINGS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    _check_file(prepared.root, path)  # read line by line: its kind, not its size
    out = []
    with tf.io.gfile.GFile(path) as f:
        for line in f:
            r = json.loads(line) if line.strip() else None
            if r and r["split"] == split and r.get("annotated_extent", "full") == "full":
                start, end = r.get("span_s") or (0.0, r["duration_s"])
                out.append(RecordingEvents(r["key"], r["source"], r["split"], end - start,
                                           tuple(Event(s - start, e - start, label)
                                                 for s, e, label in r["events"]), start,
                                           "span_s" not in r))
    return sorted(out, key=lambda r: (r.key, r.offset_s))


@dataclasses.dataclass(frozen=True)
class ReviewedRecording:
    """A partly annotated recording (`prepare --annotated-extent selections`: verdicts on
    detections): where it is, how long, and the spans a person reviewed, in seconds from its
    start: `events` (spans holding an event of their label, `model.events.Event`) and
    `negatives` ((start_s, end_s, label) spans holding no event of `label`; label None: of
    any label). Its other time is unknown."""
    key: str
    source: str
    duration_s: float
    events: tuple
    negatives: tuple


def read_reviewed(prepared: Prepared, splits=("train", "validation")) -> list:
    """The partly annotated recordings of `prepared` (`--annotated-extent selections`), their
    reviewed spans in the stretches of `splits` gathered per recording, sorted by key; []
    for a folder with none (or prepared before `negatives` were recorded)."""
    from earmark.model.events import Event
    path = os.path.join(prepared.root, RECORDINGS_FILE)
    if not tf.io.gfile.exists(path):
        return []
    _check_file(prepared.root, path)
    by_key = {}
    with tf.io.gfile.GFile(path) as f:
        for line in f:
            r = json.loads(line) if line.strip() else None
            if not r or r["split"] not in splits or "negatives" not in r:
                continue
            events, negatives = by_key.setdefault(r["key"], (r, set(), set()))[1:]
            events.update(Event(s, e, label) for s, e, label in r["events"])
            # [start, end, label ruled out] (folders prepared before labels were kept there
            # hold [start, end]: a span holding no event of any label, as they trained)
            negatives.update((n[0], n[1], n[2] if len(n) > 2 else None) for n in r["negatives"])
    return [ReviewedRecording(key, r["source"], r["duration_s"], tuple(sorted(events)),
                              tuple(sorted(negatives, key=negative_order)))
            for key, (r, events, negatives) in sorted(by_key.items())
            if events or negatives]


def negative_order(span) -> tuple:
    """Sort key of (start_s, end_s, label or None) negatives."""
    return span[0], span[1], span[2] or ""


def read_split(prepared: Prepared, split: str, required: bool = True) -> SplitArrays:
    """All examples of one split as numpy arrays (empty arrays when absent and not required)."""
    files = split_files(prepared.root, split)
    config = prepared.feature_config
    if not files and required:
        raise UserError(f"no {split} shards in {prepared.root}; re-run prepare with a --split "
                        f"that gives the {split} split a share")
    rep = config.representation
    n_labels = len(prepared.labels)
    cols = {k: [] for k in (rep, "label", "recording_key", "source", "start_s", "multi_hot")}

    def parse(serialized):
        ex = parse_example(serialized, config)
        ex["multi_hot"] = tf.reduce_max(tf.one_hot(ex.pop("labels"), n_labels), axis=0)
        return ex
    if files:
        ds = (tf.data.TFRecordDataset(files, compression_type="GZIP")
              .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
              .batch(1024))
        for batch in ds.as_numpy_iterator():
            bad = set(utf8_strings(batch["feature_config_hash"])) - {config.hash()}
            if bad:
                raise UserError(f"{prepared.root}: shards hold features of another config "
                                f"({sorted(bad)[0]}); re-run prepare into an empty folder")
            for k in cols:
                cols[k].append(batch[k])
    def cat(k, empty):
        return np.concatenate(cols[k]) if cols[k] else empty
    patches = cat(rep, np.zeros((0,) + config.patch_shape, np.float32))
    keys = utf8_strings(cat("recording_key", np.zeros(0, object)))
    starts = cat("start_s", np.zeros(0, np.float32))
    # Beam writes shards in whatever order its bundles ran: sort by (recording, start) so
    # the same data always trains the same model, however prepare happened to run.
    order = np.lexsort((starts, keys))
    patches = patches[order]
    return SplitArrays(
        None if config.is_waveform else patches,
        cat("label", np.zeros(0, np.int64))[order],
        keys[order],
        utf8_strings(cat("source", np.zeros(0, object)))[order],
        starts[order],
        patches if config.is_waveform else None,
        cat("multi_hot", np.zeros((0, n_labels), np.float32))[order])


# --- augmentation (training only, on log-mel patches) -------------------------------------

def spec_augment(x: tf.Tensor, fill: float, cfg: AugmentConfig) -> tf.Tensor:
    """One random time mask and one frequency mask per patch, filled with `fill`."""
    frames, bins = x.shape[-2], x.shape[-1]

    def mask(length, width):
        w = tf.random.uniform([], 0, width + 1, tf.int32)
        start = tf.random.uniform([], 0, tf.maximum(length - w, 0) + 1, tf.int32)
        idx = tf.range(length)
        return (idx >= start) & (idx < start + w)
    m = mask(frames, cfg.time_mask_frames)[:, None] | mask(bins, cfg.freq_mask_bins)[None, :]
    return tf.where(m, tf.cast(fill, x.dtype), x)


def mixup(x: tf.Tensor, y: tf.Tensor, alpha: float):
    """Mix each example of a batch with a shuffled partner: λx + (1-λ)x', same for labels."""
    n = tf.shape(x)[0]
    g1 = tf.random.gamma([n], alpha)
    g2 = tf.random.gamma([n], alpha)
    lam = g1 / (g1 + g2)
    perm = tf.random.shuffle(tf.range(n))
    lx = tf.reshape(lam, [-1, 1, 1])
    ly = tf.reshape(lam, [-1, 1])
    return lx * x + (1 - lx) * tf.gather(x, perm), ly * y + (1 - ly) * tf.gather(y, perm)


def training_dataset(x: np.ndarray, y_onehot: np.ndarray, batch_size: int, seed: int,
                     augment: AugmentConfig = AugmentConfig(), fill: float = 0.0,
                     sample_weight: np.ndarray = None):
    """Shuffled, batched (x, y[, w]) with optional SpecAugment and mixup."""
    tensors = (x, y_onehot) if sample_weight is None else (x, y_onehot, sample_weight)
    ds = tf.data.Dataset.from_tensor_slices(tensors).shuffle(len(x), seed=seed,
                                                             reshuffle_each_iteration=True)
    if augment.spec_augment:
        ds = ds.map(lambda a, *rest: (spec_augment(a, fill, augment), *rest),
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size)
    if augment.mixup:
        ds = ds.map(lambda a, b, *rest: (*mixup(a, b, augment.mixup_alpha), *rest))
    return ds.prefetch(tf.data.AUTOTUNE)


def read_source_bytes(path: str) -> bytes:
    """A recording's bytes, local or gs:// (through TensorFlow's file system)."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()
