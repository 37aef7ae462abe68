"""`earmark evaluate`'s computations: score an exported model on prepared TFRecords, on raw
labeled clips, or (events) on annotated long recordings.

A clip's score is the mean of its patches' probabilities (prepared data: patches grouped by
`recording_key`; raw clips: the serving model on waveform windows). Each entry returns the
report (accuracy, macro F1, per-class precision/recall/F1/ROC-AUC, confusion matrix; or
event metrics) and writes it, with PNG plots when matplotlib is installed, to the report
dir. Inputs come listed and audio comes through a `read_bytes(path)` callable: the command
(`earmark/commands/evaluate.py`) lists them with the corpus readers of `earmark.pipelines`,
so local paths and gs:// work alike.
"""
import json
import os

import numpy as np

from earmark.model import audio
from earmark.model import precision as precisions
from earmark.model.errors import UserError
from earmark.model.model_files import EVALUATION_FILE, EVENT_EVALUATION_FILE, HISTORY_FILE
from earmark.model.model_files import CONFUSION_PLOT, PRECISION_RECALL_PLOT, TRAINING_CURVES_PLOT


def read_local_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --- metrics (pure functions) --------------------------------------------------------------

def metrics(probs: np.ndarray, labels: np.ndarray, names: list) -> dict:
    """Single-label classification metrics from probabilities [n, k] and true indices [n]."""
    from sklearn.metrics import (confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score)
    k = len(names)
    pred = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=range(k), zero_division=0)
    per_class = {}
    aucs = []
    for i, name in enumerate(names):
        positives = labels == i
        auc = None
        if 0 < positives.sum() < len(labels):
            auc = float(roc_auc_score(positives, probs[:, i]))
            aucs.append(auc)
        per_class[name] = {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                           "f1": round(float(f[i]), 4), "support": int(s[i]),
                           "roc_auc": None if auc is None else round(auc, 4)}
    present = [i for i in range(k) if s[i] > 0]
    return {
        "examples": int(len(labels)),
        "accuracy": round(float((pred == labels).mean()) if len(labels) else 0.0, 4),
        "macro_f1": round(float(np.mean(f[present])) if present else 0.0, 4),
        "roc_auc_macro": round(float(np.mean(aucs)), 4) if aucs else None,
        "per_class": per_class,
        "confusion_matrix": {"labels": list(names),
                             "rows_true_cols_predicted":
                                 confusion_matrix(labels, pred, labels=range(k)).tolist()},
    }


THRESHOLD_F1_SLACK = 0.02  # thresholds within this much of the best F1 count as equally good


def choose_thresholds(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class, a score threshold for "present" when labeling (0.5 when the class is absent).

    Among thresholds on a 0.05..0.95 grid whose one-vs-rest F1 on these clips is within
    THRESHOLD_F1_SLACK of the best, take the one closest to 0.5. Validation clips are few
    and balanced, while a long recording is mostly background: the F1 maximum alone often
    sits at the lowest positive score (0.12 measured on snore), which then fires on every
    faint sound of a night. Preferring 0.5 on the plateau keeps the validated F1 and the
    margin."""
    out = np.full(n_classes, 0.5)
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    for c in range(n_classes):
        y = labels == c
        if not y.any() or len(labels) == 0:
            continue
        hits = probs[:, c][None, :] >= grid[:, None]
        tp = (hits & y[None, :]).sum(axis=1)
        f1 = 2 * tp / (hits.sum(axis=1) + y.sum())
        good = grid[f1 >= f1.max() - THRESHOLD_F1_SLACK]
        out[c] = good[np.argmin(np.abs(good - 0.5))]
    return out


def aggregate(probs: np.ndarray, labels: np.ndarray, keys: np.ndarray):
    """Patch probabilities → clip probabilities (mean over a clip's patches) and labels."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.zeros((len(uniq), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    clip_labels = np.zeros(len(uniq), np.int64)
    clip_labels[inverse] = labels
    return sums / counts, clip_labels, uniq


# --- clips ------------------------------------------------------------------------------

def clip_windows(wav: np.ndarray, config) -> np.ndarray:
    """A clip's windows that `prepare` trains on: those holding enough of the clip
    (`model.window_labels`; a zero-padded tail window holding little of it is left out)."""
    from earmark.model import export, window_labels
    windows = export.windows(wav, config)
    starts = np.arange(len(windows)) * config.patch_hop_seconds
    kinds = window_labels.label_windows(
        starts, config.patch_samples / config.sample_rate_hz,
        [window_labels.clip_event("clip", len(wav) / config.sample_rate_hz)])
    return windows[[k.kind == window_labels.EVENT for k in kinds]]


def predict_clips(model, rows, config, batch_size=64, read_bytes=read_local_file):
    """Serving model on each clip's waveform windows → (clip probs [n, k] or None per clip,
    failed paths). All windows go through the model in shared batches."""
    windows, owner, failed = [], [], []
    for i, (path, _) in enumerate(rows):
        try:
            wav, _, _ = audio.load_waveform(read_bytes(path), config.sample_rate_hz, path,
                                            config.resample_quality)
        except (OSError, audio.AudioError) as e:
            failed.append({"path": path, "reason": str(e)[:200]})
            continue
        w = clip_windows(wav, config)
        windows.append(w)
        owner += [i] * len(w)
    out = [None] * len(rows)
    if windows:
        probs = model.predict(np.concatenate(windows), batch_size=batch_size, verbose=0)
        owner = np.array(owner)
        for i in np.unique(owner):
            out[i] = probs[owner == i].mean(axis=0)
    return out, failed


def check_labels(model_labels, data_labels, where):
    if list(model_labels) != list(data_labels):
        raise UserError(f"labels of the model {list(model_labels)} do not match {where} "
                        f"{list(data_labels)}; evaluate on data prepared with the same labels")


# --- events on annotated recordings ---------------------------------------------------------

def recording_windows(path: str, config, read_bytes=read_local_file):
    """A recording (`read_bytes(path)`) → (its windows [n, patch_samples] on the one grid of
    `model.windowing`, at `config`'s rate and patch hop; its duration in seconds)."""
    from earmark.model import windowing
    wav, _, _ = audio.load_waveform(read_bytes(path), config.sample_rate_hz, path,
                                    config.resample_quality)
    windows = windowing.frame_windows(wav, config.patch_samples, config.patch_hop_samples)
    return windows, len(wav) / config.sample_rate_hz


def recording_segments(predictor, path: str, post, batch_size: int = 128,
                       read_bytes=read_local_file):
    """One recording → (segments as `earmark label` finds them by default, duration_s):
    the model's windows at its labeling hop, its calibrated post-processing."""
    from earmark.model.model_files import feature_config
    from earmark.model.segments import WindowGrid, to_segments
    config = feature_config(predictor.meta).with_patch_hop(predictor.default_hop_seconds)
    from earmark.model.scoring import score_recording
    wav, _, _ = audio.load_waveform(read_bytes(path), config.sample_rate_hz, path,
                                    config.resample_quality)
    scores = score_recording(predictor.predict, wav, config.patch_samples,
                             config.patch_hop_samples, batch_size)
    duration_s = len(wav) / config.sample_rate_hz
    grid = WindowGrid(config.patch_hop_seconds, config.patch_samples / config.sample_rate_hz)
    return to_segments(scores, predictor.meta["labels"], post, grid, duration_s), duration_s


def evaluate_events(model_dir: str, recordings, *, source: str, annotations: str,
                    unannotated=(), left_out=(), problems=(), ignore_s=None,
                    report_dir: str = None,
                    batch_size: int = 64, read_bytes=read_local_file,
                    precision: str = "float32") -> dict:
    """Event metrics of the model's default labeling on annotated long recordings, the
    model's image base computing in `precision` (`model.precision`).

    `recordings`: (key, path, annotation rows) for every annotated recording (`key`: its
    path relative to the corpus root, as in the report); `unannotated`: the keys of the
    recordings no table annotates; `left_out`: (key, why) of recordings whose tables could
    not be read whole (not scored: an event there would count as a false alarm);
    `problems`: `model.annotations.BadAnnotation`s met while reading the tables; `ignore_s`:
    {key: [(start_s, end_s)]} spans of rows that could not be used: segments touching them
    are not scored; `source`, `annotations`: the corpus and the tables as the report names
    them. Writes EVENT_EVALUATION_FILE to `report_dir` (default `model_dir`)."""
    from earmark.model import event_metrics, serving
    from earmark.model.annotations import to_events
    from earmark.model.events import Event
    from earmark.model.segments import PostProcessing, model_post_processing, written_labels
    predictor = serving.predictor(model_dir, precision)
    meta = predictor.meta
    written = written_labels(meta)
    resolved = model_post_processing(meta)
    post = [PostProcessing.from_dict(resolved[l][0]) if l in written else None
            for l in meta["labels"]]
    truth, predicted, durations, failed, past_end = {}, {}, {}, [], []
    for key, path, rows in sorted(recordings, key=lambda r: r[0]):
        try:
            segments, duration = recording_segments(predictor, path, post, batch_size,
                                                    read_bytes)
        except (OSError, audio.AudioError) as e:
            failed.append({"file": key, "reason": str(e)[:200]})
            continue
        events = to_events(rows)
        past_end += [{"file": key, "event": [e.start_s, e.end_s, e.label]} for e in events
                     if e.end_s > duration + 1e-3]
        truth[key] = [e for e in events if e.end_s <= duration + 1e-3]
        ignored = (ignore_s or {}).get(key, ())
        predicted[key] = [Event(s.start_s, s.end_s, s.label) for s in segments
                          if not any(min(s.end_s, b) > max(s.start_s, a) for a, b in ignored)]
        durations[key] = duration
    if not truth:
        raise UserError(f"none of the {len(recordings)} annotated recordings could be decoded "
                        f"(first: {failed[0]['reason']})")
    unknown = sorted({e.label for ev in truth.values() for e in ev} - set(meta["labels"]))
    report = {
        "model": os.path.abspath(model_dir), "unit": "events",
        "numeric_precision": precisions.effective(precision, meta),
        "source": source, "annotations": annotations,
        "labels_scored": written,
        "post_processing": {l: resolved[l][0] for l in written},
        "recordings_annotated": len(recordings), "recordings_scored": len(truth),
        "recordings_unannotated": sorted(unannotated),
        "recordings_left_out": [{"file": key, "reason": why} for key, why in sorted(left_out)],
        "failed": failed,
        "annotation_problems": [dict(source=b.source, line=b.line, reason=b.reason,
                                     detail=b.detail) for b in problems]
        + [dict(**p, reason="past_end") for p in past_end],
        "annotation_labels_not_in_model": unknown,
        **event_metrics.score(truth, predicted, durations, written),
    }
    _write_json(report_dir or model_dir, EVENT_EVALUATION_FILE, report)
    return report


def _write_json(report_dir: str, name: str, report: dict) -> None:
    os.makedirs(report_dir, exist_ok=True)
    with open(os.path.join(report_dir, name), "w") as f:
        json.dump(report, f, indent=2)

# --- plots ----------------------------------------------------------------------------------

def write_plots(report_dir, history, probs, labels, names, cm) -> list:
    """Training curves, confusion matrix and PR curves as PNGs; [] without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from sklearn.metrics import precision_recall_curve
    written = []
    if history:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, key in zip(axes, ("loss", "accuracy")):
            for k in (key, f"val_{key}"):
                if k in history:
                    ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
            ax.set_xlabel("epoch"), ax.set_title(key), ax.legend()
        written.append(_save(fig, report_dir, TRAINING_CURVES_PLOT, plt))
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.6 * len(names)))
    ax.imshow(np.array(cm), cmap="Blues")
    for (i, j), v in np.ndenumerate(np.array(cm)):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(names)), names, rotation=90), ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    written.append(_save(fig, report_dir, CONFUSION_PLOT, plt))
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, name in enumerate(names):
        if 0 < (labels == i).sum() < len(labels):
            p, r, _ = precision_recall_curve(labels == i, probs[:, i])
            ax.plot(r, p, label=name)
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.legend(fontsize=7)
    written.append(_save(fig, report_dir, PRECISION_RECALL_PLOT, plt))
    return written


def _save(fig, d, name, plt):
    path = os.path.join(d, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- clip-level evaluation ------------------------------------------------------------------

def evaluate_prepared(model_dir: str, prepared_dir: str, split: str = "test", *,
                      report_dir: str = None, batch_size: int = 64,
                      precision: str = "float32") -> dict:
    """The model on a split of prepared data (`earmark prepare`'s output, with the model's
    FeatureConfig): clip scores are the mean of their patches'. Writes EVALUATION_FILE and
    plots to `report_dir` (default `model_dir`)."""
    from earmark.model import data, export, serving
    model, meta = serving.load(model_dir, precision)
    names = meta["labels"]
    config = export.feature_config(meta)
    prepared = data.open_prepared(prepared_dir)
    check_labels(names, prepared.labels, f"--data {prepared_dir}")
    if prepared.feature_config.hash() != config.hash():
        base = meta.get("base", {})
        hint = (f"earmark prepare --base {base['name']}" if base.get("kind") in ("embedding", "ensemble")
                else "earmark prepare with the model's feature settings")
        raise UserError(f"--data {prepared_dir} was prepared with another FeatureConfig "
                        f"({prepared.feature_config.hash()}) than the model "
                        f"({config.hash()}); re-run {hint} (the model's feature_config "
                        "is in its model.json)")
    arrays = data.read_split(prepared, split)
    if config.is_waveform:  # embedding base: the serving model on the windows
        patch_probs = np.asarray(model.predict(arrays.waveform, batch_size=batch_size,
                                               verbose=0)) if len(arrays) else \
            np.zeros((0, len(names)), np.float32)
    else:
        from earmark.model.bottleneck import embed
        patch_probs = embed(export.log_mel_model(model), arrays.log_mel, batch_size)
    probs, labels, _ = aggregate(patch_probs, arrays.label, arrays.recording_key)
    report = {"model": os.path.abspath(model_dir), "unit": "clip (mean of patch scores)",
              "source": os.path.abspath(prepared_dir), "split": split,
              "numeric_precision": precisions.effective(precision, meta),
              "patches": int(len(arrays)),
              "patch_accuracy": round(float((patch_probs.argmax(1) == arrays.label).mean()), 4)}
    return _clip_report(model_dir, meta, report, probs, labels, report_dir)


def evaluate_clips(model_dir: str, rows, source: str, *, report_dir: str = None,
                   batch_size: int = 64, read_bytes=read_local_file,
                   precision: str = "float32") -> dict:
    """The serving model on raw labeled clips, `rows` of (path, label) read with
    `read_bytes(path)`; `source` names them in the report. Clips that cannot be decoded are
    listed under `failed`. Writes EVALUATION_FILE and plots to `report_dir` (default
    `model_dir`)."""
    from earmark.model import export, serving
    model, meta = serving.load(model_dir, precision)
    names = meta["labels"]
    rows = list(rows)
    if not rows:
        raise UserError("no labeled clips found")
    unknown = sorted({l for _, l in rows} - set(names))
    if unknown:
        raise UserError(f"labels {unknown} are not in the model {names}; "
                        "evaluate on clips of the model's labels")
    clip_probs, failed = predict_clips(model, rows, export.feature_config(meta), batch_size,
                                       read_bytes)
    keep = [i for i, p in enumerate(clip_probs) if p is not None]
    if not keep:
        raise UserError(f"none of the {len(rows)} clips could be decoded "
                        f"(first: {failed[0]['reason']})")
    probs = np.stack([clip_probs[i] for i in keep])
    labels = np.array([names.index(rows[i][1]) for i in keep])
    report = {"model": os.path.abspath(model_dir), "unit": "clip (mean of patch scores)",
              "source": source, "numeric_precision": precisions.effective(precision, meta),
              "failed": failed}
    return _clip_report(model_dir, meta, report, probs, labels, report_dir)


def _clip_report(model_dir, meta, report, probs, labels, report_dir) -> dict:
    """`report` + metrics, recall at the model's thresholds and plots, written to
    `report_dir` (default `model_dir`)."""
    names = meta["labels"]
    report.update(metrics(probs, labels, names))
    t = {l: meta["post_processing"][l]["threshold"] for l in names}
    if t:
        th = np.array([t[n] for n in names])
        report["at_thresholds"] = {n: {"threshold": t[n], "recall": round(float(
            (probs[labels == i, i] >= th[i]).mean()), 4) if (labels == i).any() else None}
            for i, n in enumerate(names)}
    report_dir = report_dir or model_dir
    os.makedirs(report_dir, exist_ok=True)
    history = None
    hp = os.path.join(model_dir, HISTORY_FILE)
    if os.path.isfile(hp):
        with open(hp) as f:
            history = json.load(f)
    report["plots"] = write_plots(report_dir, history, probs, labels, names,
                                  report["confusion_matrix"]["rows_true_cols_predicted"])
    if not report["plots"]:
        report["plots_note"] = "matplotlib not installed: no PNG plots"
    _write_json(report_dir, EVALUATION_FILE, report)
    return report
