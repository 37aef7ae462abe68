"""musicnn (Pons & Serra 2019) ported to Keras 3, up to its 753-d `max_pool` embedding.

The pretrained weights are the TF1 checkpoints shipped inside the `musicnn` 0.1.0 wheel
(install it with `--no-deps`: its metadata pins numpy<1.17). They are hidden dot-files
(`<site-packages>/musicnn/MSD_musicnn/.index`, `.data-00000-of-00001`), read here by
variable name with `tf.compat.v1.train.NewCheckpointReader` (`tf.train.load_checkpoint`
fails there: each folder's `checkpoint` file points at the author's home). Every variable
the port needs must be present with the right shape, or `CheckpointMismatch` is raised. (musicnn's own
`extractor` wraps its restore in a bare `except:` and silently runs random weights.)

Nothing from the `musicnn` package is imported: its modules call
`tf.compat.v1.disable_eager_execution()` and need legacy Keras. Only the wheel's files are
located (`importlib.util.find_spec`, which does not execute the package).

Frontend (TF ops, `MusicnnFrontend`), identical to musicnn's `batch_data` on a 3-s clip:
16 kHz mono → |STFT|² (periodic Hann 512, hop 256, librosa-style centre padding, whose
left half is all the first 187 frames ever see) → Slaney mel (96 bands, 0–8 kHz,
Slaney-normalised, as `librosa.filters.mel`) → rounded to float16 (as musicnn does) →
log10(10000·x + 1) → the first 187 frames. 187 frames = musicnn's 3-s `n_frames`; they
use samples [0, 47872) of the 48000-sample window.

Network (`build_network`): the `musicnn` graph of `musicnn/models.py` — input batch norm,
timbral convs 7×38 and 7×67 (204 filters each), temporal convs 128/64/32×1 (51 each), each
ReLU → BN → max over frequency; three dense-residual 7-tap mid-end convs (64 each);
`max_pool` = max over time of the 561+64+64+64 = 753 concatenated channels. BN runs in
inference mode (moving statistics).
"""
import hashlib
import importlib.util
import os

import numpy as np
import tensorflow as tf
import keras

from earmark.model.musicnn_spec import (CHECKPOINTS, EMBEDDING_DIM,  # noqa: F401
                                        SAMPLE_RATE_HZ, WINDOW_SAMPLES)

N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187              # librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
USED_SAMPLES = (PATCH_FRAMES - 1) * HOP + N_FFT // 2   # 47872: the last frame's right edge
LICENCE = "ISC (musicnn 0.1.0, Pons & Serra; weights from the musicnn wheel)"

# Keras-layer name == TF1 variable scope in the checkpoint. Order = creation order in
# musicnn/models.py:build_musicnn (tf.compat.v1.layers auto-numbering).
_INPUT_BN = "batch_normalization"
_TIMBRAL = (("conv2d", "batch_normalization_1", (7, 38)),
            ("conv2d_1", "batch_normalization_2", (7, 67)))
_TEMPORAL = (("conv2d_2", "batch_normalization_3", (128, 1)),
             ("conv2d_3", "batch_normalization_4", (64, 1)),
             ("conv2d_4", "batch_normalization_5", (32, 1)))
_MIDEND = (("conv2d_5", "batch_normalization_6"),
           ("conv2d_6", "batch_normalization_7"),
           ("conv2d_7", "batch_normalization_8"))
TIMBRAL_FILTERS = int(1.6 * 128)    # 204
TEMPORAL_FILTERS = int(1.6 * 32)    # 51
MIDEND_FILTERS = 64


class CheckpointMismatch(RuntimeError):
    """The checkpoint lacks a variable the port needs, or its shape differs."""


class MusicnnNotInstalled(RuntimeError):
    """The musicnn wheel (which holds the weights) is not installed."""


# ---------------------------------------------------------------- checkpoint files

def checkpoint_prefix(checkpoint: str = "MSD") -> str:
    """Path prefix of the wheel's TF1 checkpoint (`…/musicnn/MSD_musicnn/`; files `.index`,
    `.data-00000-of-00001` sit under it as dot-files). Does not import `musicnn`."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"unknown musicnn checkpoint {checkpoint!r}; choose from {sorted(CHECKPOINTS)}")
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise MusicnnNotInstalled(
            "the musicnn wheel is not installed; install it without its (numpy<1.17) deps: "
            "pip install --no-deps musicnn==0.1.0")
    root = list(spec.submodule_search_locations)[0]
    prefix = os.path.join(root, CHECKPOINTS[checkpoint]) + os.sep
    if not os.path.exists(prefix + ".index"):
        raise MusicnnNotInstalled(f"{prefix}.index is missing: the musicnn install is incomplete")
    return prefix


def read_checkpoint(prefix: str) -> dict:
    """All float variables of a TF1 checkpoint, by name → numpy array."""
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


# ---------------------------------------------------------------- frontend

def _hz_to_mel(hz):
    hz = np.asanyarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(mel):
    mel = np.asanyarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def slaney_mel_matrix(sr=SAMPLE_RATE_HZ, n_fft=N_FFT, n_mels=N_MELS) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32, equal to librosa.filters.mel(sr=sr, n_fft=n_fft,
    n_mels=n_mels) (Slaney mel scale, Slaney area normalisation, 0 Hz to sr / 2)."""
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    return weights


@keras.saving.register_keras_serializable(package="earmark")
class MusicnnFrontend(keras.layers.Layer):
    """[batch, samples ≥ 47872] 16-kHz waveform → [batch, 187, 96] musicnn log-mel."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._mel = tf.constant(slaney_mel_matrix().T)    # [257, 96]

    def call(self, waveforms):
        # float64 FFT then complex64 |X|², as librosa computes it: the float16 rounding
        # below then disagrees with musicnn's own features in ~1 of 18k bins per window
        # (float32 FFT: ~9), each by one float16 step.
        waveforms = tf.cast(tf.convert_to_tensor(waveforms), tf.float64)
        # librosa's centre padding; only the left half reaches the first 187 frames
        padded = tf.pad(waveforms[:, :USED_SAMPLES], [[0, 0], [N_FFT // 2, 0]])
        stft = tf.signal.stft(padded, frame_length=N_FFT, frame_step=HOP, fft_length=N_FFT,
                              window_fn=tf.signal.hann_window, pad_end=False)
        power = tf.math.square(tf.abs(tf.cast(stft, tf.complex64)))
        mel = tf.tensordot(power, self._mel, axes=1)
        mel = tf.cast(tf.cast(mel, tf.float16), tf.float32)    # musicnn stores float16
        return tf.math.log(10000.0 * mel + 1.0) / np.float32(np.log(10.0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], PATCH_FRAMES, N_MELS)


# ---------------------------------------------------------------- network

@keras.saving.register_keras_serializable(package="earmark")
class MusicnnMaxPool(keras.layers.Layer):
    """[batch, frames, 96] log-mel → [batch, 753] musicnn `max_pool` (inference mode).

    Sub-layers carry the TF1 scope names, so `load_tf1_checkpoint` maps them one to one."""

    def __init__(self, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = seed
        rng = np.random.default_rng(seed)

        def init():
            return keras.initializers.GlorotUniform(seed=int(rng.integers(2**31)) if seed is not None else None)

        def bn(name):
            return keras.layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.99,
                                                   name=name, dtype="float32")

        def conv(name, filters, kernel, padding):
            return keras.layers.Conv2D(filters, kernel, padding=padding, activation="relu",
                                       kernel_initializer=init(), name=name, dtype="float32")

        # each sub-layer is an attribute named after its TF1 scope (so `.keras` saving
        # walks it); the block structure is kept as names only
        setattr(self, _INPUT_BN, bn(_INPUT_BN))
        for c, b, k in _TIMBRAL:
            setattr(self, c, conv(c, TIMBRAL_FILTERS, k, "valid"))
            setattr(self, b, bn(b))
        for c, b, k in _TEMPORAL:
            setattr(self, c, conv(c, TEMPORAL_FILTERS, k, "same"))
            setattr(self, b, bn(b))
        for (c, b), w in zip(_MIDEND, (561, MIDEND_FILTERS, MIDEND_FILTERS)):
            setattr(self, c, conv(c, MIDEND_FILTERS, (7, w), "valid"))
            setattr(self, b, bn(b))

    def _blocks(self, spec):
        return [(getattr(self, c), getattr(self, b)) for c, b, *_ in spec]

    @property
    def input_bn(self):
        return getattr(self, _INPUT_BN)

    def tf1_layers(self):
        """(TF1 scope name, Keras layer) for every layer with weights, in creation order."""
        names = [_INPUT_BN] + [n for block in (_TIMBRAL, _TEMPORAL, _MIDEND) for c, b, *_ in block for n in (c, b)]
        return [(n, getattr(self, n)) for n in names]

    def build(self, input_shape):
        frames = None
        self.input_bn.build((None, frames, N_MELS, 1))
        for c, b in self._blocks(_TIMBRAL) + self._blocks(_TEMPORAL):
            c.build((None, frames, N_MELS, 1))
            b.build((None, frames, None, c.filters))
        width = TIMBRAL_FILTERS * 2 + TEMPORAL_FILTERS * 3
        for c, b in self._blocks(_MIDEND):
            c.build((None, frames, width, 1))
            b.build((None, frames, 1, MIDEND_FILTERS))
            width = MIDEND_FILTERS
        self.built = True

    def call(self, logmel):
        x = self.input_bn(tf.expand_dims(logmel, 3), training=False)
        pad7 = tf.pad(x, [[0, 0], [3, 3], [0, 0], [0, 0]])
        front = []
        for c, b in self._blocks(_TIMBRAL):
            front.append(tf.reduce_max(b(c(pad7), training=False), axis=2))
        for c, b in self._blocks(_TEMPORAL):
            front.append(tf.reduce_max(b(c(x), training=False), axis=2))
        front = tf.concat(front, 2)                       # [B, T, 561]
        mids = [front]
        h = tf.expand_dims(front, 3)
        previous = None
        for c, b in self._blocks(_MIDEND):
            y = b(c(tf.pad(h, [[0, 0], [3, 3], [0, 0], [0, 0]])), training=False)
            y = tf.transpose(y, [0, 1, 3, 2])             # [B, T, 64, 1]
            if previous is not None:
                y = y + previous
            previous = h = y
            mids.append(tf.squeeze(y, 3))
        features = tf.concat(mids, 2)                     # [B, T, 753]
        return tf.reduce_max(features, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], EMBEDDING_DIM)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def load_tf1_checkpoint(network: MusicnnMaxPool, prefix: str) -> dict:
    """Assign every weight of `network` from the checkpoint at `prefix`, by TF1 name.
    Raises `CheckpointMismatch` listing every missing or mis-shaped variable; returns the
    {name: array} actually assigned."""
    if not network.built:
        network.build((None, PATCH_FRAMES, N_MELS))
    stored = read_checkpoint(prefix)
    assigned, problems = {}, []
    for scope, layer in network.tf1_layers():
        for var in layer.weights:
            name = f"{scope}/{var.name}"
            if name not in stored:
                problems.append(f"missing {name}")
            elif tuple(stored[name].shape) != tuple(var.shape):
                problems.append(f"{name}: checkpoint {stored[name].shape} vs port {tuple(var.shape)}")
            else:
                assigned[name] = stored[name]
    if problems:
        raise CheckpointMismatch(f"{prefix}: " + "; ".join(problems))
    weights = {f"{scope}/{var.name}": var for scope, layer in network.tf1_layers() for var in layer.weights}
    for name, value in assigned.items():
        weights[name].assign(value)
    return assigned


def weights_checksum(network: MusicnnMaxPool) -> str:
    """sha256 over (name, shape, float32 bytes) of the weights the network holds now."""
    h = hashlib.sha256()
    for scope, layer in network.tf1_layers():
        for var in layer.weights:
            value = np.ascontiguousarray(keras.ops.convert_to_numpy(var), dtype=np.float32)
            h.update(f"{scope}/{var.name}:{value.shape}\n".encode())
            h.update(value.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- public builders

def build_network(checkpoint="MSD", seed=None, prefix=None) -> MusicnnMaxPool:
    """The log-mel → max_pool network; `checkpoint` "MSD" / "MTT" loads the wheel's weights
    (or those at `prefix`), None leaves a random (Glorot, seeded) init."""
    network = MusicnnMaxPool(seed=seed, name="musicnn_max_pool")
    network.build((None, PATCH_FRAMES, N_MELS))
    if checkpoint is not None or prefix is not None:
        load_tf1_checkpoint(network, prefix or checkpoint_prefix(checkpoint))
    return network


def build_model(checkpoint="MSD", seed=None, prefix=None) -> keras.Model:
    """Keras model [batch, 48000] 16-kHz waveform windows → [batch, 753] embedding. It holds
    its weights (a saved `.keras` file no longer needs the musicnn wheel)."""
    waveform = keras.Input((WINDOW_SAMPLES,), name="waveform_16k", dtype="float32")
    logmel = MusicnnFrontend(name="musicnn_frontend")(waveform)
    embedding = build_network(checkpoint, seed, prefix)(logmel)
    tag = (checkpoint or "random").lower()
    return keras.Model(waveform, embedding, name=f"musicnn_{tag}")
