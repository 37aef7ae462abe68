"""Window embeddings: what `earmark embed`, `earmark label --formats embeddings` and
`earmark search` compute for each window: the frozen base's vector (the input of the
model's head), and with a trained model its per-label scores, in one forward pass.

    embedder = for_model(model_dir)     # a trained model (model.json + model.keras/head.keras)
    embedder = for_base("musicnn")      # a registered embedding base alone, no head
    emb, scores = embedder.run(windows) # [n, window_samples] → [n, dim] float32, [n, labels] or None
    embedder.describe()                 # base, dimensions, window, hop, model id, labels

The embedding is the penultimate output of the exported model, whatever its base:
image bases (`export.serving_model`: waveform → log-mel → `embedder` → `head`): the pooled
features the `embedder` returns; musicnn and other Keras-native embedding bases: the base's
vector; ensembles: the members' vectors concatenated (the head's input); BirdNET (served as
embedder + head): the BirdNET vector. It is found as the input of the layer named `head`,
so it is the very vector the head scores.

Every call can be padded to a fixed batch (`pad_to`): a window's vector then never depends
on how many windows were computed with it (TensorFlow takes other code paths for a batch of
one), so shards are the same bytes whatever the worker count. Pure model code: no Beam.
"""
import dataclasses

import numpy as np

from earmark.model.errors import UserError

HEAD_LAYER = "head"


@dataclasses.dataclass
class Description:
    """What embed.json records of the vectors: enough to embed a query the same way."""
    base: str                 # the base's name (model.json `base.name`, or --base)
    embedding_dim: int
    sample_rate_hz: int
    window_samples: int
    hop_s: float              # the default hop of this model / base
    model_id: str = ""        # "" for a base alone
    labels: tuple = ()        # the model's labels (score columns), () for a base alone

    @property
    def window_s(self) -> float:
        return self.window_samples / self.sample_rate_hz

    def to_dict(self) -> dict:
        return {"base": self.base, "embedding_dim": self.embedding_dim,
                "sample_rate_hz": self.sample_rate_hz, "window_samples": self.window_samples,
                "window_s": round(self.window_s, 6), "default_hop_s": self.hop_s,
                "model_id": self.model_id, "labels": list(self.labels)}


def _pad(windows: np.ndarray, pad_to) -> np.ndarray:
    n = len(windows)
    if not pad_to or n >= pad_to:
        return windows
    return np.concatenate([windows, np.zeros((pad_to - n, windows.shape[1]), np.float32)])


def _penultimate(model):
    """(inputs, embedding tensor) of a functional serving model: the input of its head."""
    try:
        head = model.get_layer(HEAD_LAYER)
        tensor = head._inbound_nodes[0].input_tensors[0]
    except (ValueError, IndexError, AttributeError):
        raise UserError("this model has no layer named 'head' to take the embedding in front "
                        "of; re-run 'earmark train'") from None
    return model.inputs, tensor


class _KerasPair:
    """A Keras serving model → one graph windows → (embedding, scores)."""

    def __init__(self, model):
        import keras
        import tensorflow as tf
        inputs, embedding = _penultimate(model)
        pair = keras.Model(inputs[0] if len(inputs) == 1 else inputs, [embedding, model.output],
                           name="earmark_embedding")
        self.dim = int(embedding.shape[-1])
        specs = [tf.TensorSpec([None, *t.shape[1:]], tf.float32) for t in inputs]
        if len(specs) == 1:
            self._fn = tf.function(lambda x: pair(x, training=False), input_signature=specs)
        else:
            self._fn = tf.function(lambda *xs: pair(list(xs), training=False),
                                   input_signature=specs)

    def __call__(self, *inputs):
        emb, scores = self._fn(*[np.asarray(x, np.float32) for x in inputs])
        return np.asarray(emb, np.float32), np.asarray(scores, np.float32)


class ModelEmbedder:
    """A trained model (`model.export.load`) → window embeddings and scores."""

    def __init__(self, model_dir: str, precision: str = "float32", embedder_batch_size: int = None,
                 model_id: str = ""):
        from earmark.model import export
        from earmark.model import precision as precisions
        if precisions.resolve(precision) == "int8":
            raise UserError("--precision int8 serves the model's 8-bit scores only, not its "
                            "embeddings; use --precision auto or float32")
        model, meta = export.load(model_dir, precision, embedder_batch_size)
        self.meta = meta
        rate, window, hop = export.window_spec(meta)
        if isinstance(model, export.EmbedderHeadModel):       # BirdNET: .tflite + Keras head
            base, head = model.base, model.head
            self.dim = int(base.spec.embedding_dim)

            def run(windows):
                emb = np.asarray(base.embed(windows), np.float32)
                return emb, np.asarray(head.predict_on_batch(emb), np.float32)
            self._run = run
        elif isinstance(model, export.EnsembleModel):        # installed members as inputs
            pair = _KerasPair(model.model)
            self.dim = pair.dim
            self._run = lambda windows: pair(*model._inputs(windows))
        else:
            pair = _KerasPair(model)
            self.dim = pair.dim
            self._run = pair
        self.description = Description(meta.get("base", {}).get("name", ""), self.dim, rate,
                                       window, hop, model_id or meta.get("model_id", ""),
                                       tuple(meta["labels"]))

    def run(self, windows, pad_to: int = None):
        """[n, window_samples] → (embeddings [n, dim], scores [n, labels]), float32."""
        windows = np.asarray(windows, np.float32)
        n = len(windows)
        emb, scores = self._run(_pad(windows, pad_to))
        return emb[:n], scores[:n]

    def describe(self) -> dict:
        return self.description.to_dict()


class BaseEmbedder:
    """A registered embedding base alone (musicnn, BirdNET, an ensemble of them, or one a
    plugin registers), its pretrained weights, at its own rate and window: no scores."""

    def __init__(self, name: str, embedder_batch_size: int = None):
        self.spec = base_spec(name)
        kwargs = {"batch_size": embedder_batch_size} if embedder_batch_size and \
            getattr(self.spec, "family", "") == "birdnet" else {}
        try:
            self._base = self.spec.load("pretrained", **kwargs)
        except UserError:
            raise
        except Exception as e:  # a wheel that is not installed, a broken install
            raise UserError(f"--base {name}: cannot load it ({type(e).__name__}: "
                            f"{str(e)[:160]}); install it: {self.spec.install}") from None
        self.dim = int(self.spec.embedding_dim)
        from earmark.model.features import embedding_base_config
        hop = embedding_base_config(self.spec).patch_hop_seconds
        self.description = Description(self.spec.name, self.dim, int(self.spec.sample_rate_hz),
                                       int(self.spec.window_samples), hop)

    def run(self, windows, pad_to: int = None):
        """[n, window_samples] → (embeddings [n, dim], None)."""
        windows = np.asarray(windows, np.float32)
        n = len(windows)
        return np.asarray(self._base.embed(_pad(windows, pad_to)), np.float32)[:n], None

    def describe(self) -> dict:
        return self.description.to_dict()


def base_spec(name: str):
    """The spec of an embedding base (or an ensemble of them) for `--base NAME`; a one-line
    UserError for an unknown name or an image base (it needs a trained model: its input
    standardization comes from the training data)."""
    from earmark.model import base_registry
    try:
        spec = base_registry.get(name)
    except (KeyError, ValueError) as e:
        raise UserError(f"--base {name}: {e.args[0] if e.args else e}") from None
    if spec.kind == "image":
        raise UserError(f"--base {name}: an image base embeds log-mel patches standardized "
                        "by a trained model's statistics; train a model and pass --model, or "
                        "use an embedding base (" + ", ".join(
                            base_registry.names("embedding")) + ")")
    return spec


def for_model(model_dir: str, precision: str = "float32", embedder_batch_size: int = None,
              model_id: str = "") -> ModelEmbedder:
    return ModelEmbedder(model_dir, precision, embedder_batch_size, model_id)


def for_base(name: str, embedder_batch_size: int = None) -> BaseEmbedder:
    return BaseEmbedder(name, embedder_batch_size)


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero): cosine similarity is then a dot
    product."""
    e = np.asarray(embeddings, np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", e, e, dtype=np.float32))
    return e / np.where(norms > 0, norms, 1)[:, None]


def query_vector(window_embeddings: np.ndarray) -> np.ndarray:
    """A query made of several windows: the mean of their unit vectors, itself made unit
    (one window: its own unit vector)."""
    mean = unit_rows(window_embeddings).mean(axis=0, keepdims=True)
    return unit_rows(mean)[0]
