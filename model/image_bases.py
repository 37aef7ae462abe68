"""Registry of pretrained image bases (`keras.applications`, no top) and their weights,
each registered in `model.base_registry` (`BaseSpec.load` → `ImageBase`).

One code path for every base: `build_base(name, input_px, weights)` returns a Keras model
[batch, px, px, 3] preprocessed pixels → [batch, features]. Features are the global average
pooling of the last layer (`pooling="last"`) or, by default (`"multiscale"`), of three
layers from the middle to the top of the base, concatenated: on the snore clips with the
VGG16 stand-in this lifted a linear probe from ~93 % to ~98 % validation accuracy (see
docs/train.md), as spectrogram "objects" are better described by mid-level textures. The
base's own input preprocessing is applied by the adapter (`model.adapter`), named by
`BaseSpec.preprocess_mode`. `blocks(base, name)` cuts the base into its architectural
blocks so `finetune` can unfreeze the top N.

`--weights` is `imagenet` (Keras download, cached in ~/.keras), `none` (random init, seeded)
or a path to a weights file, local or gs:// (copied to ~/.cache/earmark/weights first).
"""
import dataclasses
import hashlib
import os
import re

import numpy as np

from earmark.model import base_registry, file_kinds
from earmark.model.errors import UserError

CACHE_ROOT = os.path.expanduser(os.environ.get("EARMARK_CACHE", "~/.cache/earmark"))


@dataclasses.dataclass(frozen=True)
class BaseSpec:
    """A `keras.applications` constructor and what earmark needs to know about it."""
    name: str
    constructor: str          # attribute of keras.applications
    default_input_px: int     # chosen by benchmarks/train_bases.py, see docs/train.md
    min_input_px: int         # smallest input the architecture accepts
    preprocess_mode: str      # "tf" ([-1, 1]), "caffe" (BGR mean-subtracted), "none" (built in)
    block_pattern: str        # regex on layer names; group 1 names the block ("" = by marker)
    feature_layers: tuple = ()  # pooled and concatenated for pooling="multiscale"
    block_end_marker: str = ""  # regex of layers that close a block (bases without block names)
    kind = "image"              # base_registry: trained by strategy on log-mel images
    input = "log_mel"           # prepare writes log-mel patches (the default FeatureConfig)

    def load(self, weights: str = "imagenet", seed: int = 0, *, features, stats,
             input_px: int = 0, pooling: str = "multiscale", weights_info=None) -> "ImageBase":
        """The base behind its adapter, for prepared log-mel patches (`features`) with the
        training patches' `stats`; `weights_info` (`resolve_weights`) when already resolved."""
        from earmark.model import bottleneck
        spec = bottleneck.EmbedderSpec.for_data(features, stats, self.name, weights, input_px,
                                                seed, pooling)
        embedder, network = bottleneck.build_embedder(spec, weights_info)
        return ImageBase(self, spec, embedder, network)


BASES = {
    "inception_v3": BaseSpec("inception_v3", "InceptionV3", 96, 75, "tf", "",
                             ("mixed2", "mixed7", "mixed10"), block_end_marker=r"^mixed\d+$"),
    "mobilenet_v2": BaseSpec("mobilenet_v2", "MobileNetV2", 96, 32, "tf",
                             r"^(block_\d+|expanded_conv)_",
                             ("block_5_add", "block_12_add", "out_relu")),
    "efficientnet_b0": BaseSpec("efficientnet_b0", "EfficientNetB0", 96, 32, "none",
                                r"^(block\d[a-z])_",
                                ("block3b_add", "block5c_add", "top_activation")),
    "resnet50": BaseSpec("resnet50", "ResNet50", 96, 32, "caffe", r"^(conv\d_block\d+)_",
                         ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out")),
    "vgg16": BaseSpec("vgg16", "VGG16", 96, 32, "caffe", r"^(block\d)_",
                      ("block3_pool", "block4_pool", "block5_pool")),
}
for _spec in BASES.values():
    base_registry.register(_spec)
POOLINGS = ("multiscale", "last")
DEFAULT_BASE = "inception_v3"


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """Where a base's weights came from: `source` as given, `local_path` when a file,
    `file_sha256` of that file, or None for imagenet/none."""
    source: str
    local_path: str = None
    file_sha256: str = None

    @property
    def is_random(self) -> bool:
        return self.source == "none"


def get_spec(name: str) -> BaseSpec:
    if name not in BASES:
        raise UserError(f"unknown base {name!r}; choose one of {', '.join(sorted(BASES))}")
    return BASES[name]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy_from_gcs(uri: str, cache_root: str) -> str:
    """gs://bucket/path → a local copy under the cache (downloaded once)."""
    local = os.path.join(cache_root, "weights", hashlib.sha256(uri.encode()).hexdigest()[:16],
                         os.path.basename(uri))
    if os.path.exists(local):
        return local
    try:
        from google.cloud import storage
        bucket, _, blob = uri[len("gs://"):].partition("/")
        os.makedirs(os.path.dirname(local), exist_ok=True)
        storage.Client().bucket(bucket).blob(blob).download_to_filename(local + ".part")
    except Exception as e:
        raise UserError(f"could not copy weights {uri} to a local file ({type(e).__name__}: "
                        f"{str(e)[:200]}); check the path and your gcloud credentials") from None
    os.replace(local + ".part", local)
    return local


def resolve_weights(weights: str, cache_root: str = CACHE_ROOT) -> WeightsInfo:
    """`imagenet` | `none` | local path | gs:// path → WeightsInfo (a gs:// file is copied)."""
    if weights in ("imagenet", "none"):
        return WeightsInfo(weights)
    local = _copy_from_gcs(weights, cache_root) if weights.startswith("gs://") else weights
    fix = "pass imagenet, none, or the path of a weights file (.weights.h5 or .h5)"
    # a FIFO, a device or a folder: named as such, never opened (hashing a FIFO blocks)
    if file_kinds.check_regular_file(local, f"--weights {weights}", fix=fix) is None:
        raise UserError(f"--weights {weights!r}: no such file; {fix}")
    return WeightsInfo(weights, os.path.abspath(local), sha256_file(local))


def build_base(name: str, input_px: int, weights: WeightsInfo, seed: int = 0,
               pooling: str = "multiscale"):
    """The headless base with global average pooling: [b, px, px, 3] → [b, features]."""
    import keras
    spec = get_spec(name)
    if input_px < spec.min_input_px:
        raise UserError(f"--input-size {input_px} is too small for {name}; "
                        f"use at least {spec.min_input_px}")
    ctor = getattr(keras.applications, spec.constructor)
    keras.utils.set_random_seed(seed)
    shape = (input_px, input_px, 3)
    if pooling not in POOLINGS:
        raise UserError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if weights.source == "imagenet":
        try:
            app = ctor(weights="imagenet", include_top=False, input_shape=shape)
        except Exception as e:
            raise UserError(f"could not download the ImageNet weights for {name} "
                            f"({type(e).__name__}); pass a local weights file with "
                            "--weights PATH (or --weights none)") from None
    else:
        app = ctor(weights=None, include_top=False, input_shape=shape)
    if weights.local_path:
        try:
            app.load_weights(weights.local_path)
        except Exception as e:
            raise UserError(f"weights file {weights.source} does not fit {name} without top "
                            f"({type(e).__name__}: {str(e)[:160]})") from None
    taps = spec.feature_layers if pooling == "multiscale" else (app.layers[-1].name,)
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{t}")(app.get_layer(t).output)
              for t in taps]
    out = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pooled")(pooled)
    return keras.Model(app.input, out, name=name)


class ImageBase(base_registry.Base):
    """An image base as `base_registry` sees it: log-mel patches [n, frames, bins] →
    `embedder` (the adapter: standardize, resize to input_px, the base's preprocessing; then
    the base) → pooled features. `network` is the keras.applications model inside, whose top
    blocks fine-tuning unfreezes; `embedder_spec` keys the bottleneck cache."""

    def __init__(self, spec: BaseSpec, embedder_spec, embedder, network):
        self.spec, self.embedder_spec = spec, embedder_spec
        self.embedder, self.network = embedder, network
        self.weights = embedder_spec.weights

    def embed(self, log_mels) -> np.ndarray:
        from earmark.model import bottleneck
        return bottleneck.embed(self.embedder, np.asarray(log_mels, np.float32))

    def weights_checksum(self) -> str:
        return weights_checksum(self.network)

    def keras_model(self):
        return self.embedder

    def serving_model(self, head, features=None):
        """Waveform windows → the log-mel frontend (in-graph) → embedder → head."""
        from earmark.model import export
        return export.serving_model(self.embedder, head, features)

    def describe(self) -> dict:
        return {"name": self.spec.name, "input_px": self.embedder_spec.input_px,
                "feature_dim": int(self.network.output_shape[-1]),
                "pooling": self.embedder_spec.pooling}


def blocks(base, name: str) -> list:
    """The base's layers grouped into architectural blocks, input side first. Layers outside
    any named block (stem, top conv) join the block before them; the stem is block 0."""
    spec = get_spec(name)
    groups, current_id = [[]], None
    for layer in base.layers:
        if spec.block_pattern:
            m = re.match(spec.block_pattern, layer.name)
            if m and m.group(1) != current_id:
                current_id = m.group(1)
                groups.append([])
            groups[-1].append(layer)
        else:
            groups[-1].append(layer)
            if re.match(spec.block_end_marker, layer.name):
                groups.append([])
    return [g for g in groups if g]


def unfreeze_top_blocks(base, name: str, n_blocks: int) -> int:
    """Freeze the base, then make the top `n_blocks` trainable (BatchNorm layers stay
    frozen, i.e. in inference mode). Returns the number of layers made trainable."""
    import keras
    base.trainable = True
    for layer in base.layers:
        layer.trainable = False
    count = 0
    for group in blocks(base, name)[-n_blocks:] if n_blocks > 0 else []:
        for layer in group:
            if not isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
                count += 1
    return count


def weights_checksum(model) -> str:
    """sha256 (hex) over a model's weight values, as used: identifies random inits and
    downloads (model.json `weights.checksum`)."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(np.asarray(w.numpy(), np.float32)).tobytes())
    return h.hexdigest()


def weights_fingerprint(model) -> str:
    """The first 16 hex digits of `weights_checksum` (bottleneck cache keys)."""
    return weights_checksum(model)[:16]
