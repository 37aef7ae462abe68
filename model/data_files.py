"""Which files make a prepared-data folder (`earmark prepare`'s output) and its split
names, defined once: names only, no TensorFlow, so the pipelines ask cheaply."""

FEATURES_FILE = "features.json"       # FeatureConfig + label vocabulary
STATS_FILE = "stats.json"             # prepare's counts, and the shards it wrote
RECORDINGS_FILE = "recordings.jsonl"  # one line per recording: split, duration, its events
SHARD_SUFFIX = ".tfrecord.gz"         # {split}-NNNNN-of-NNNNN.tfrecord.gz
SPLITS = ("train", "validation", "test")
# one JSON line per file a pipeline could not use: prepare's here, and `earmark label`
# writes its own under the same name (`pipelines/label_formats.py`)
DEAD_LETTER_FILE = "dead_letter.jsonl"


def stem(name: str) -> str:
    """A file name without its last suffix: the prefix Beam's WriteToText takes."""
    return name.rsplit(".", 1)[0]
