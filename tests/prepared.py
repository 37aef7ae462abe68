"""Read a prepared output folder back for assertions."""
import glob
import json
import os

import tensorflow as tf

from earmark.model.examples import parse_example
from earmark.model.features import FeatureConfig


def load_json(out, name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def read_dead_letter(out):
    with open(os.path.join(out, "dead_letter.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_examples(out, split):
    """All examples of a split as dicts of numpy values / python strings."""
    config = FeatureConfig.from_dict(load_json(out, "features.json")["feature_config"])
    files = sorted(glob.glob(os.path.join(out, f"{split}-*.tfrecord.gz")))
    rows = []
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = parse_example(raw, config)
        rows.append({k: (v.numpy().decode() if v.dtype == tf.string else v.numpy())
                     for k, v in ex.items()})
    return rows
