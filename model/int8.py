"""`--precision int8`: an image-base model's embedder and head run in TFLite with 8-bit
weights (dynamic-range quantization: weights stored as int8, activations quantized per
batch). `earmark train` (image bases, unless `--no-int8`) converts them once and ships
model_int8.tflite beside the float32 model.keras (converting takes 4.5 s for the VGG16
stand-in, 11-18 s for InceptionV3 at 96 px: too long to repeat in every `label` process).

Serving it needs no TensorFlow: the `.tflite` runs in the LiteRT runtime (`ai-edge-litert`,
the TFLite interpreter as its own package) and the log-mel frontend in numpy
(`model.frontend_numpy`, float32, within 1e-4 of the TensorFlow one). Quantized, the
frontend's mel and DFT matrices would lose the quiet end of the spectrum (8-bit weights on
the whole serving model scored nonsense, event F1 0.04 on a night), so it is never in the
8-bit file. Parity and speed: `benchmarks/tflite_forward.py`, `benchmarks/label_phases.py`,
figures in docs/benchmarks.md.
"""
import contextlib
import hashlib
import io
import os
import re
import sys
import tempfile
import threading

import numpy as np

from earmark.model import frontend_numpy
from earmark.model.errors import UserError
from earmark.model.model_files import INT8_FILE, check_outputs, feature_config

DEFAULT_BATCH = 128


def convert(log_mel_model, weights_8bit: bool = True) -> bytes:
    """A Keras log-mel → probabilities model (`export.log_mel_model`) → TFLite bytes with
    dynamic-range INT8 weights (float32 ones with `weights_8bit=False`, for comparison)."""
    import tensorflow as tf
    # from_keras_model (from_concrete_functions aborts the process on MobileNetV2), with
    # the listing Keras prints of the SavedModel it exports on the way kept off stdout
    converter = tf.lite.TFLiteConverter.from_keras_model(log_mel_model)
    if weights_8bit:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with contextlib.redirect_stdout(io.StringIO()), _native_stderr_filtered():
        return converter.convert()


class Int8Model:
    """A serving model (waveform windows → probabilities) whose log-mel → probabilities path
    runs in an 8-bit TFLite interpreter, its frontend in numpy. `predict` /
    `predict_on_batch` as a Keras model; `log_mel_path()` for log-mel inputs."""

    def __init__(self, config, tflite: bytes, threads: int = None):
        self._config = config
        self._tflite, self._threads = tflite, threads or os.cpu_count()
        self._interpreter, self._planned = None, 0   # planned: the batch size it takes
        self._lock = threading.Lock()   # one interpreter: one call at a time
        self.input_shape = (None, config.patch_samples)
        self.output_shape = (None, _output_width(tflite))

    @classmethod
    def from_dir(cls, model_dir: str, meta: dict, threads: int = None) -> "Int8Model":
        """The 8-bit model of a model dir (`meta`: its model.json, checked to name one and
        as many labels as the file has outputs)."""
        model = cls(feature_config(meta), read_file(model_dir, meta), threads)
        check_outputs(model, meta, INT8_FILE, model_dir)
        return model

    def predict_log_mel(self, log_mels) -> np.ndarray:
        """[b, frames, mel_bins] log-mel → [b, labels] probabilities. The interpreter takes
        the largest batch size seen so far: smaller batches are zero-padded to it rather
        than re-planning every tensor for each new size."""
        log_mels = np.asarray(log_mels, np.float32)
        n = len(log_mels)
        if not n:
            return np.zeros((0, self.output_shape[-1]), np.float32)
        with self._lock:
            if self._planned < n:
                self._plan(n, log_mels.shape[1:])
            if n < self._planned:
                log_mels = np.concatenate([log_mels, np.zeros(
                    (self._planned - n, *log_mels.shape[1:]), np.float32)])
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(log_mels))
            self._interpreter.invoke()
            return self._interpreter.get_tensor(self._output)[:n].copy()

    def _plan(self, batch: int, shape) -> None:
        """A new interpreter for batches of `batch`: TFLite (2.17 at least) crashed when
        freeing an interpreter whose tensors were re-planned for a larger batch, so each is
        planned once."""
        Interpreter = _interpreter_class()
        self._interpreter = None
        with _native_stderr_filtered():
            self._interpreter = Interpreter(model_content=self._tflite, num_threads=self._threads)
            self._input = self._interpreter.get_input_details()[0]["index"]
            self._output = self._interpreter.get_output_details()[0]["index"]
            self._interpreter.resize_tensor_input(self._input, [batch, *shape])
            self._interpreter.allocate_tensors()
        self._planned = batch

    def predict_on_batch(self, windows) -> np.ndarray:
        return self.predict_log_mel(frontend_numpy.log_mel(windows, self._config,
                                                           workers=self._threads))

    def predict(self, windows, batch_size=None, verbose=0) -> np.ndarray:
        return _in_batches(self.predict_on_batch, windows, batch_size, self.output_shape[-1])

    def log_mel_path(self) -> "LogMelPath":
        return LogMelPath(self)


class LogMelPath:
    """`Int8Model`'s log-mel → probabilities path, `predict` as a Keras model (what
    `bottleneck.embed` calls)."""

    def __init__(self, model: Int8Model):
        self._model = model
        self.output_shape = model.output_shape

    def predict(self, log_mels, batch_size=None, verbose=0) -> np.ndarray:
        return _in_batches(self._model.predict_log_mel, log_mels, batch_size,
                           self.output_shape[-1])


def _interpreter_class():
    """LiteRT's interpreter; TensorFlow's own where the `ai-edge-litert` wheel is not
    installed (a platform without one): the same file and scores, TensorFlow imported."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    return Interpreter


def _output_width(tflite: bytes) -> int:
    """The number of scores the file's model outputs (read from the file: under 1 ms)."""
    with _native_stderr_filtered():
        return int(_interpreter_class()(model_content=tflite).get_output_details()[0]["shape"][-1])


def read_file(model_dir: str, meta: dict) -> bytes:
    """model_int8.tflite, checked against the sha256 model.json records for it."""
    path, blob = os.path.join(model_dir, INT8_FILE), b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            blob = f.read()
    if hashlib.sha256(blob).hexdigest() != meta["int8"]["sha256"]:
        what = "not the one model.json names" if blob else "missing"
        raise UserError(f"--model {model_dir}: {INT8_FILE} is {what}; re-run 'earmark train' "
                        "(or use --precision float32: the float model)")
    return blob


def _in_batches(fn, inputs, batch_size, width: int) -> np.ndarray:
    inputs = np.asarray(inputs, np.float32)
    step = batch_size or DEFAULT_BATCH
    parts = [fn(inputs[i:i + step]) for i in range(0, len(inputs), step)]
    return np.concatenate(parts) if parts else np.zeros((0, width), np.float32)


NATIVE_NOISE = ("WARNING: All log messages before absl::InitializeLog()", "W0000 ", "I0000 ",
                "INFO: Created TensorFlow Lite XNNPACK delegate")
# TensorFlow's own INFO lines ("2026-12-06 05:32:57.973837: I tensorflow/cc/saved_model/...":
# the converter reading back the SavedModel it wrote), printed where TF_CPP_MIN_LOG_LEVEL is 0
TF_INFO_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I ")


@contextlib.contextmanager
def _native_stderr_filtered():
    """TFLite's converter and interpreter log from C++ straight to file descriptor 2 (no
    TF_CPP_MIN_LOG_LEVEL applies): catch it for the block, then pass on every line that is
    not one of their `NATIVE_NOISE` notices (all of it when the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            kept = [l for l in lines
                    if failed or not (l.startswith(NATIVE_NOISE) or TF_INFO_LINE.match(l))]
            if kept:
                sys.stderr.write("".join(kept))
