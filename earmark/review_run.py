"""`earmark review`, reading: a label output folder (run.json, segments, scores/,
sources.csv) as what review chooses from — the labels to review with their thresholds and
smoothing, the model's window, and per recording its key (as segments.csv names it), its
output name, its scores and where its audio is. Local folders only; no TensorFlow, and of
Beam only its file systems (`pipelines/outputs.py`)."""
import dataclasses
import os

from earmark.model import model_files
from earmark.model.errors import UserError
from earmark.model.review import LabelRule
from earmark.model.segments import PostProcessing
from earmark.model.window_labels import background_labels
from earmark.pipelines import label_formats, outputs
from earmark.report_runs import feature_config, find_audio, read_run


@dataclasses.dataclass(frozen=True)
class Recording:
    key: str          # the recording as segments.csv names it
    name: str         # its per-recording files' name (sources.csv), under scores/, raven/, ...
    audio: str        # its local path, or None when not found


@dataclasses.dataclass
class LabelRun:
    dir: str
    summary: dict          # run.json
    segments: list         # Segment
    labels: list           # every label of the model, in its order
    rules: dict            # label → LabelRule, for the labels to review
    window_s: float
    config: object         # FeatureConfig: spectrograms, and the window
    recordings: list       # Recording, sorted by key
    has_scores: bool
    notes: list            # what the user should know (defaults used, ...)

    def scores(self, recording: Recording):
        """(window starts [n], {label: scores [n]}) of scores/NAME.csv, or None."""
        scores = label_formats.OUTPUT_FORMATS["scores"]
        path = os.path.join(self.dir, *scores.path(recording.name).split("/"))
        if not os.path.isfile(path):
            return None
        with open(path, newline="", encoding="utf-8") as f:
            return scores.read(f.read())


def read_label_run(run_dir: str, model_dir: str = None, audio_root: str = None) -> LabelRun:
    """The label run at `run_dir`; `model_dir` (default: the run's) gives the window and
    log-mel settings, `audio_root` where the recordings are when sources.csv's paths are
    not there any more."""
    run = read_run(run_dir, audio_root)
    summary, notes = run["summary"], []
    model = {"meta": model_files.read_local_meta(model_dir)} if model_dir else None
    config, note = feature_config(model, run)
    notes += [note] if note else []
    where = model_dir or summary.get("model")
    if not (isinstance(where, str) and os.path.isfile(os.path.join(where, model_files.META_FILE))):
        notes.append(f"windows are taken to be {config.patch_seconds:g} s long (the run's model "
                     "was not found; pass --model MODEL_DIR)")
    labels = list(summary.get("labels") or sorted({s.label for s in run["segments"]}))
    rules = label_rules(summary, labels)
    if not rules:
        raise UserError(f"--run {run_dir}: its run.json names no label to review (only "
                        "background labels); label with a model that has event labels")
    recordings = recordings_of(run_dir, run, audio_root)
    has_scores = os.path.isdir(os.path.join(run_dir, label_formats.PER_RECORDING["scores"][0]))
    return LabelRun(run_dir, summary, run["segments"], labels, rules, config.patch_seconds,
                    config, recordings, has_scores, notes)


def label_rules(summary: dict, labels: list) -> dict:
    """label → LabelRule of the labels whose segments the run wrote: run.json's
    post-processing (threshold, smoothing), else its thresholds; labels not written
    (background ones) are not reviewed."""
    post = summary.get("post_processing") or {}
    if post:
        return {label: LabelRule(float(p["settings"]["threshold"]),
                                 int(p["settings"].get("smoothing_windows", 1)))
                for label, p in post.items() if p.get("written", True) and label in labels}
    thresholds = summary.get("thresholds") or {}
    background = set(background_labels(labels))
    return {label: LabelRule(float(thresholds.get(label, PostProcessing().threshold)))
            for label in labels if label not in background}


def recordings_of(run_dir: str, run: dict, audio_root: str) -> list:
    """Every labeled recording: sources.csv's names and URIs, with each one's key (its
    segments' `file`)."""
    path = os.path.join(run_dir, outputs.SOURCES_FILE)
    if os.path.isfile(path):
        with open(path, newline="", encoding="utf-8") as f:
            sources = outputs.read_sources_csv(f.read())
    else:   # an older run: names are keys
        sources = [(key, key) for key in run["recordings"]]
    keys = sorted({s.file for s in run["segments"]})
    input_root = run["summary"].get("input")
    out = []
    for name, source in sources:
        key = recording_key(name, source, keys, input_root)
        local = source if "://" not in source and os.path.isfile(source) else None
        out.append(Recording(key, name, local or find_audio(key, run["audio_roots"])))
    return sorted(out, key=lambda r: r.key)


def recording_key(name: str, source: str, segment_keys: list, input_root: str = None) -> str:
    """The key label gave the recording at `source` (sources.csv): the segments' `file`
    that is the source or ends it, else its path under the run's --input, else its name."""
    if source in segment_keys:
        return source
    ending = [k for k in segment_keys if source.endswith("/" + k)]
    if ending:
        return max(ending, key=len)
    if input_root and "://" not in source and source.startswith(input_root.rstrip("/") + "/"):
        return os.path.relpath(source, input_root).replace(os.sep, "/")
    return name


def duration_s(recording: Recording):
    """Seconds of a recording's audio from its header, or None."""
    if recording.audio is None:
        return None
    try:
        import soundfile as sf
        return float(sf.info(recording.audio).duration)
    except Exception:
        return None
