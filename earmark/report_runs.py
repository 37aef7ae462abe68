"""`earmark report`, reading: a label output folder (run.json, segments, scores, dead
letters, where its recordings are) and a model folder (model.json, history, evaluation.json,
event_evaluation.json, evaluate's PNGs). Local folders only; no Beam, no TensorFlow."""
import json
import os

from earmark.model import model_files
from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig
from earmark.model.model_files import EVALUATION_FILE, EVENT_EVALUATION_FILE, HISTORY_FILE, META_FILE
from earmark.pipelines import label_formats  # Beam-free: the label outputs' names and readers
from earmark.pipelines.label_formats import DEAD_LETTER_FILE, RUN_FILE


def _read_json(path: str, what: str, fix: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); {fix}") from None
    except OSError as e:
        raise UserError(f"{what}: cannot read {path} ({e.strerror}); {fix}") from None



# --- run: reading ---------------------------------------------------------------------------

def read_run(run_dir: str, audio_root: str = None) -> dict:
    """Everything the run sections need from a label output folder."""
    path = os.path.join(run_dir, RUN_FILE)
    if not os.path.isdir(run_dir):
        raise UserError(f"--run {run_dir}: no such folder; point it at the --output of "
                        "'earmark label'")
    if not os.path.isfile(path):
        raise UserError(f"--run {run_dir}: no run.json; point it at the --output of "
                        "'earmark label' (a run that finished)")
    summary = _read_json(path, f"--run {run_dir}", "re-run 'earmark label'")
    segments = read_segments(run_dir)
    dead = read_dead_letter(run_dir)
    roots = audio_roots(run_dir, summary, dead, audio_root)
    return {"dir": run_dir, "summary": summary, "segments": segments, "dead": dead,
            "recordings": labeled_recordings(run_dir, segments), "audio_roots": roots,
            "labels": list(summary.get("labels") or sorted({s.label for s in segments}))}


def read_segments(run_dir: str) -> list:
    """The `Segment`s of segments.csv (or of segments.jsonl when only that was written);
    [] when neither."""
    for fmt in label_formats.COMBINED:
        text = _read_text(os.path.join(run_dir, label_formats.OUTPUT_FORMATS[fmt].file))
        if text is not None:
            return label_formats.OUTPUT_FORMATS[fmt].read(text)
    return []


def _read_text(path: str):
    """A local file's UTF-8 text, untranslated line ends (as csv wants); None when absent."""
    if not os.path.isfile(path):
        return None
    with open(path, newline="", encoding="utf-8") as f:
        return f.read()


def read_dead_letter(run_dir: str) -> list:
    path = os.path.join(run_dir, DEAD_LETTER_FILE)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _keys_under(folder: str, suffix: str) -> set:
    keys = set()
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if name.endswith(suffix):
                rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
                keys.add(rel[:-len(suffix)])
    return keys


def labeled_recordings(run_dir: str, segments: list) -> list:
    """Keys of every labeled recording: those with segments, plus those whose per-recording
    files (scores/, raven/, audacity/) show they were labeled without any."""
    keys = {s.file for s in segments}
    for folder, suffix in label_formats.PER_RECORDING.values():
        keys |= _keys_under(os.path.join(run_dir, folder), suffix)
    return sorted(keys)


def read_scores(run_dir: str, key: str):
    """(window starts [n], {label: scores [n]}) from scores/KEY.csv, or None."""
    scores = label_formats.OUTPUT_FORMATS["scores"]
    text = _read_text(os.path.join(run_dir, *scores.path(key).split("/")))
    return None if text is None else scores.read(text)


def audio_roots(run_dir: str, summary: dict, dead: list, audio_root: str = None) -> list:
    """Folders the run's file keys may be relative to, most trusted first."""
    roots = []
    if audio_root:
        if not os.path.isdir(audio_root):
            raise UserError(f"--audio-root {audio_root}: no such folder; give the --input "
                            "folder of 'earmark label'")
        roots.append(audio_root)
    for name in ("input", "manifest"):  # recorded by label runs that know them
        where = summary.get(name)
        if isinstance(where, str) and "://" not in where:
            roots.append(where if os.path.isdir(where) else os.path.dirname(where))
    for d in dead:  # a failed file's absolute path ends with its key
        path, key = d.get("path", ""), d.get("file", "")
        if key and path.endswith(key) and "://" not in path:
            roots.append(path[:-len(key)].rstrip("/") or "/")
    return list(dict.fromkeys(os.path.abspath(r) for r in roots))


def find_audio(key: str, roots: list):
    """The recording's local path, or None when it is not (or no longer) there."""
    candidates = [key] if os.path.isabs(key) else []
    candidates += [os.path.join(root, key) for root in roots]
    return next((c for c in candidates if os.path.isfile(c)), None)


def recording_duration(path, scores, segments, window_s: float) -> float:
    """Seconds of a recording: its header, else the scored windows, else its last segment."""
    if path:
        try:
            import soundfile as sf
            return float(sf.info(path).duration)
        except Exception:
            pass
    estimates = [s.end_s for s in segments]
    if scores is not None and len(scores[0]):
        estimates.append(float(scores[0][-1]) + window_s)
    return max(estimates, default=0.0)


def feature_config(model, run):
    """The FeatureConfig for thumbnails: --model's, else the run's model dir's, else the
    defaults; plus a note when it is not the run's own."""
    summary = run["summary"]
    meta = model["meta"] if model else None
    if meta is None:
        where = summary.get("model")
        if isinstance(where, str) and os.path.isfile(os.path.join(where, META_FILE)):
            try:  # the run's model only lends its log-mel settings: a broken one, the defaults
                meta = model_files.read_local_meta(where)
            except UserError:
                meta = None
    if not meta or "feature_config" not in meta:
        return FeatureConfig(), ("spectrograms use earmark's default log-mel settings: the "
                                 "run's model was not found (pass --model MODEL_DIR)")
    config = FeatureConfig.from_dict(meta["feature_config"])
    run_hash = summary.get("feature_config_hash")
    if run_hash and run_hash != config.hash():
        return config, "the model's log-mel settings differ from the run's: was it another model?"
    return config, None

# --- model ----------------------------------------------------------------------------------

def read_model(model_dir: str, evaluation: str = None, event_evaluation: str = None) -> dict:
    """model.json, history.json, evaluation.json, event_evaluation.json and evaluate's PNGs
    of a model dir."""
    if not os.path.isdir(model_dir):
        raise UserError(f"--model {model_dir}: no such folder; point it at the --model-dir "
                        "of 'earmark train'")
    meta = model_files.read_local_meta(model_dir)
    history_path = os.path.join(model_dir, HISTORY_FILE)
    history = _read_json(history_path, "history", "re-run 'earmark train'") \
        if os.path.isfile(history_path) else None
    eval_path = _evaluation_path(model_dir, evaluation)
    report = _read_json(eval_path, "--evaluation", "re-run 'earmark evaluate'") if eval_path else None
    eval_dir = os.path.dirname(eval_path) if eval_path else model_dir
    pngs = {name: _read_bytes(os.path.join(eval_dir, name)) for name in
            (model_files.TRAINING_CURVES_PLOT, model_files.PRECISION_RECALL_PLOT)}
    event_path = _event_evaluation_path(model_dir, event_evaluation)
    events = _read_json(event_path, "--event-evaluation", "re-run 'earmark evaluate "
                        "--annotations'") if event_path else None
    if events is not None and (not isinstance(events, dict) or events.get("unit") != "events"):
        raise UserError(f"{event_path} is not an event evaluation (no \"unit\": \"events\"); "
                        "give the event_evaluation.json of 'earmark evaluate --input "
                        "recordings/ --annotations tables/'")
    return {"dir": model_dir, "meta": meta, "history": history, "evaluation": report,
            "evaluation_path": eval_path, "event_evaluation": events,
            "event_evaluation_path": event_path, "pngs": pngs,
            "model_id": _model_id(model_dir, meta)}


def _evaluation_path(model_dir, evaluation):
    return _given_or_default(model_dir, evaluation, EVALUATION_FILE, "--evaluation",
                             "the --report folder of 'earmark evaluate'")


def _event_evaluation_path(model_dir, event_evaluation):
    return _given_or_default(model_dir, event_evaluation, EVENT_EVALUATION_FILE,
                             "--event-evaluation", "the --report folder (default: the model "
                             "folder) of 'earmark evaluate --annotations'")


def _given_or_default(model_dir, given, name, flag, where):
    """The file `name` the flag gives (a file, or a folder holding it; an error when absent),
    else the model dir's (None when absent)."""
    if given:
        path = os.path.join(given, name) if os.path.isdir(given) else given
        if not os.path.isfile(path):
            raise UserError(f"{flag} {given}: no {name} there; point it at {where}")
        return path
    path = os.path.join(model_dir, name)
    return path if os.path.isfile(path) else None


def _read_bytes(path):
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def _model_id(model_dir, meta):
    """The id 'earmark label' gives this model; None when it needs a missing serving file."""
    serving = os.path.join(model_dir, model_files.model_files(meta)[1])
    if not meta.get("model_id") and not os.path.isfile(serving):
        return None
    return model_files.model_id(meta, lambda name: _read_bytes(os.path.join(model_dir, name)))
