"""A model dir ready to score, for `earmark label` and `evaluate`: `load(dir, precision)` →
(model, meta) and `predictor(dir, precision)`, loaded once per process.

Importing this module imports neither Keras nor TensorFlow, and neither does the 8-bit path
(`int8`, asked for or chosen by `auto`: `model.int8`, the LiteRT runtime and the numpy
frontend): a label run in int8 starts scoring seconds sooner (no TensorFlow import, no
`.keras` load, no graph trace). Every other precision loads the Keras model through
`model.export`.
"""
import collections
import dataclasses
import hashlib
import json
import os

import numpy as np

from earmark.model import precision as precisions
from earmark.model.errors import UserError
from earmark.model.model_files import META_FILE, model_files, read_local_meta, window_spec


def checked_meta(model_dir: str, precision: str) -> dict:
    """model.json of a local model dir; one-line UserError for a precision it cannot run in."""
    meta = read_local_meta(model_dir)
    try:
        precisions.check(precision, meta)
    except ValueError as e:
        raise UserError(f"--precision {precision}: {e}; use --precision auto or float32") from None
    return meta


def load(model_dir: str, precision: str = "float32", embedder_batch_size: int = None):
    """→ (serving model, meta dict) as `export.load` describes, in the precision the model
    runs in here (`precision.effective`: `auto` may be int8); int8 without Keras."""
    meta = checked_meta(model_dir, precision)
    if precisions.effective(precision, meta) != "int8":
        from earmark.model import export
        return export.load(model_dir, precision, embedder_batch_size)
    from earmark.model import int8
    return int8.Int8Model.from_dir(model_dir, meta), meta


@dataclasses.dataclass
class Predictor:
    """What the label pipeline needs: waveform windows [n, window_samples] at
    `sample_rate_hz` → scores [n, labels], and the default labeling hop."""
    model: object
    meta: dict
    sample_rate_hz: int
    window_samples: int
    default_hop_seconds: float

    def predict(self, windows) -> np.ndarray:
        return np.asarray(self._serving_fn()(np.asarray(windows, np.float32)))

    def _serving_fn(self):
        """One graph for every batch size (traced once per process; Keras' predict_on_batch
        would trace per new batch shape and add its own per-call work), or the model's own
        `predict_on_batch` when it is not a Keras model (BirdNET's embedder + head, the
        8-bit model)."""
        if getattr(self, "_fn", None) is None:
            keras = _keras_if_loaded()
            if keras is not None and isinstance(self.model, keras.Model):
                import tensorflow as tf
                spec = tf.TensorSpec([None, self.window_samples], tf.float32)
                self._fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
            else:
                self._fn = self.model.predict_on_batch
        return self._fn


def _keras_if_loaded():
    """Keras when something imported it (a Keras model exists only then), else None."""
    import sys
    return sys.modules.get("keras")


# loaded predictors by the files they came from (and their settings), most recent last
_PREDICTORS = collections.OrderedDict()
PREDICTORS_KEPT = 2


def predictor(model_dir: str, precision: str = "float32", embedder_batch_size: int = None) -> Predictor:
    """The model of a local model dir, ready to score (`load`), loaded and traced once per
    process: a later call for the same files, unchanged (model.json's bytes, each serving
    file's inode, size and change times), and the same settings returns the same Predictor
    (the label pipeline's DoFns, a process that labels several corpora). The last
    `PREDICTORS_KEPT` are kept."""
    key = _files_key(model_dir, precision, embedder_batch_size)
    if key is not None and key in _PREDICTORS:
        _PREDICTORS.move_to_end(key)
        return _PREDICTORS[key]
    model, meta = load(model_dir, precision, embedder_batch_size)
    loaded = Predictor(model, meta, *window_spec(meta))
    if key is not None:
        _PREDICTORS[key] = loaded
        while len(_PREDICTORS) > PREDICTORS_KEPT:
            _PREDICTORS.popitem(last=False)
    return loaded


def _files_key(model_dir: str, precision: str, embedder_batch_size) -> tuple:
    """What identifies a loaded model: the dir, model.json's sha256, each serving file's
    inode, size and change times, and the settings; None when model.json cannot be read
    (the load then says why)."""
    try:
        with open(os.path.join(model_dir, META_FILE), "rb") as f:
            meta_bytes = f.read(1 << 20)
        meta = json.loads(meta_bytes)
        files = []
        for name in model_files(meta):
            st = os.stat(os.path.join(model_dir, name))
            files.append((name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None
    return (os.path.realpath(model_dir), hashlib.sha256(meta_bytes).hexdigest(), tuple(files),
            precision, embedder_batch_size)
