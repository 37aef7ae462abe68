"""A local copy of a gs:// model dir, for the label pipeline's workers (a model is loaded
from local files). The copy is cached by URI *and* the content of model.json plus each
file's size and update time, so a model re-trained into the same URI is fetched again,
never served stale."""
import hashlib
import os
import tempfile

from earmark.model import file_kinds, model_files
from earmark.pipelines import fs


def local_model_dir(model_dir: str) -> str:
    """A local copy of a gs:// model dir, or the local path itself."""
    if not fs.is_gcs(model_dir):
        return model_dir
    fix = f"point --model at the --model-dir of 'earmark train' or {model_files.RETRAIN}"
    meta_bytes = fs.read_user_file(fs.join(model_dir, model_files.META_FILE),
                                   f"--model {model_dir}: {model_files.META_FILE}",
                                   file_kinds.MAX_JSON_BYTES, model_files.META_FILE, fix)
    meta = model_files.read_meta(lambda name: meta_bytes, model_dir)  # name: META_FILE
    names = model_files.model_files(meta)[::-1]
    key = hashlib.sha256(model_dir.encode() + meta_bytes)
    for name in names:
        for m in fs.FileSystems.match([fs.join(model_dir, name)])[0].metadata_list:
            if name != model_files.META_FILE:  # each is read whole: bounded by its metadata
                file_kinds.check_size(f"--model {model_dir}: {name}", m.size_in_bytes,
                                      file_kinds.MAX_MODEL_BYTES, "a model file", fix)
            key.update(f"{name}:{m.size_in_bytes}:{m.last_updated_in_seconds}".encode())
    cache = os.path.join(tempfile.gettempdir(), "earmark-models", key.hexdigest()[:16])
    if not os.path.exists(os.path.join(cache, model_files.META_FILE)):
        os.makedirs(cache, exist_ok=True)
        for name in names:  # model.json last: it marks the copy complete
            with open(os.path.join(cache, name + ".part"), "wb") as f:
                f.write(fs.read_bytes(fs.join(model_dir, name)))
        for name in names:
            os.replace(os.path.join(cache, name + ".part"), os.path.join(cache, name))
    return cache
