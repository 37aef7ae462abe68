"""Tiny synthetic prepared sets for the train/evaluate tests, and tests of `model.data`.

`make_prepared` writes what `earmark prepare` writes (features.json + GZIP TFRecord shards
of the real Example schema) without Beam, in well under a second: each class is a bright
band of mel bins at its own height over noise, so any working model separates them.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from earmark.model import data
from earmark.model.examples import make_example
from earmark.model.features import FeatureConfig


def synthetic_patch(rng, label: int, n_classes: int, config=FeatureConfig()):
    frames, bins = config.patch_shape
    x = rng.normal(-6.0, 1.0, (frames, bins)).astype(np.float32)
    width = bins // (n_classes + 1)
    lo = width * label + width // 2
    x[:, lo:lo + width] += 4.0
    return x


def make_prepared(root, n_classes=2, per_class=(12, 4, 4), seed=0, labels=None,
                  patches_per_recording=1):
    """A prepared folder with `per_class` (train, validation, test) recordings per class."""
    config = FeatureConfig()
    labels = list(labels or [f"class_{i}" for i in range(n_classes)])
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    for split, n in zip(data.SPLITS, per_class):
        path = os.path.join(root, f"{split}-00000-of-00001{data.SHARD_SUFFIX}")
        with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
            for c, name in enumerate(labels):
                for r in range(n):
                    key = f"{name}/{split}_{r}.wav"
                    for k in range(patches_per_recording):
                        patch = synthetic_patch(rng, c, len(labels), config)
                        w.write(make_example(patch, [c], [name], "/x/" + key, key, 0.96 * k,
                                             0.96 * (k + 1), False, config.hash()))
    with open(os.path.join(root, data.FEATURES_FILE), "w") as f:
        json.dump({"feature_config": config.to_dict(), "feature_config_hash": config.hash(),
                   "labels": labels, "split_fractions": {}}, f)
    return root


def test_read_split_round_trips_examples(tmp_path):
    root = make_prepared(str(tmp_path / "p"), n_classes=3, per_class=(5, 2, 1),
                         patches_per_recording=2)
    prepared = data.open_prepared(root)
    assert prepared.labels == ("class_0", "class_1", "class_2")
    train = data.read_split(prepared, "train")
    assert train.log_mel.shape == (30, 96, 64)
    assert sorted(np.bincount(train.label)) == [10, 10, 10]
    assert len(set(train.recording_key)) == 15


def test_data_hash_changes_with_content(tmp_path):
    a = data.open_prepared(make_prepared(str(tmp_path / "a")))
    b = data.open_prepared(make_prepared(str(tmp_path / "b"), per_class=(13, 4, 4)))
    assert a.data_hash != b.data_hash
    assert a.data_hash == data.open_prepared(str(tmp_path / "a")).data_hash


def test_missing_prepared_folder_is_a_user_error(tmp_path):
    from earmark.model.errors import UserError
    with pytest.raises(UserError, match="features.json"):
        data.open_prepared(str(tmp_path))


def test_spec_augment_masks_a_band_and_a_block():
    x = tf.zeros((96, 64)) + 5.0
    cfg = data.AugmentConfig(spec_augment=True, time_mask_frames=10, freq_mask_bins=6)
    tf.random.set_seed(1)
    masked = [data.spec_augment(x, -1.0, cfg).numpy() == -1.0 for _ in range(20)]
    # every mask is whole rows/columns (a time block and a mel band), never scattered cells
    for m in masked:
        rows, cols = m.all(axis=1), m.all(axis=0)
        assert (m == (rows[:, None] | cols[None, :])).all()
    assert any(m.any() for m in masked)


def test_mixup_keeps_label_mass_and_mixes():
    x = tf.constant(np.stack([np.zeros((96, 64)), np.ones((96, 64))]).astype(np.float32))
    y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    tf.random.set_seed(3)
    mx, my = data.mixup(x, y, 0.4)
    np.testing.assert_allclose(my.numpy().sum(axis=1), 1.0, atol=1e-6)
    # the mixed images are mixed exactly like their labels
    np.testing.assert_allclose(mx.numpy()[:, 0, 0], my.numpy()[:, 1], atol=1e-6)


def train_args(data_dir, model_dir, cache_dir, *extra, base="mobilenet_v2", px=32):
    """Flags for a quick synthetic `earmark train` run (weights none, small input)."""
    return ["--data", str(data_dir), "--model-dir", str(model_dir), "--base", base,
            "--weights", "none", "--input-size", str(px), "--cache-dir", str(cache_dir),
            "--epochs", "10", "--batch-size", "8", "--quiet", *extra]
