"""`earmark report`, the model's page sections: metrics (and evaluation.json), event
detection (the post-processing and calibration model.json ships, event_evaluation.json),
curves and the confusion matrix; each `*_body` returns HTML built with report_html."""
import os

from earmark import report_html as h
from earmark.model.model_files import PRECISION_RECALL_PLOT, TRAINING_CURVES_PLOT
from earmark.model.segments import PostProcessing, model_post_processing

PP_COLUMNS = (("threshold", "threshold"), ("low_threshold", "low threshold"),
              ("smoothing_windows", "smoothing (windows)"),
              ("min_duration_s", "min duration (s)"), ("max_gap_s", "max gap (s)"),
              ("extend_s", "widened by (s)"))
PP_NUMERIC = set(range(1, len(PP_COLUMNS) + 1))  # their columns, after the label's


def fmt_number(value, spec=".3f") -> str:
    """A number as text ('–' for a missing or non-numeric value), escaped."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–" if value is None else h.esc(value)
    try:
        return h.esc(format(value, spec))
    except ValueError:  # e.g. a float where a count was expected
        return h.esc(format(value, "g"))


def as_dict(value) -> dict:
    return value if isinstance(value, dict) else {}

def model_body(model) -> str:
    return (h.section("metrics", "Metrics", metrics_body(model), level=3)
            + h.section("event-detection", "Event detection", event_detection_body(model),
                        level=3)
            + h.section("curves", "Curves", curves_body(model), level=3)
            + h.section("confusion-matrix", "Confusion matrix", confusion_body(model), level=3))


def int8_parity_text(parity: dict) -> str:
    """What `train` measured of the model's 8-bit file, and what label's auto does."""
    if "event_f1" not in parity:
        return ("shipped, not checked (" + str(parity.get("why", "trained before parity was "
                "measured")) + "): label runs it with --precision int8 only")
    runs = "label's --precision auto runs it" if parity.get("holds") else \
        "label's --precision auto does not run it"
    def f1(x):
        return f"{x:.3f}" if isinstance(x, (int, float)) else "?"
    return (f"event F1 {f1(parity['event_f1'])} on the calibration audio against "
            f"{f1(parity.get('reference_event_f1'))} in "
            f"{parity.get('reference_precision', '?')}: {runs}")


def metrics_body(model) -> str:
    meta = model["meta"]
    validation = meta.get("metrics", {}).get("validation", {})
    best = meta.get("metrics", {}).get("best_epoch", {})
    training = meta.get("training", {})
    pairs = [("model id", model["model_id"] or "?"), ("folder", os.path.abspath(model["dir"])),
             ("labels", ", ".join(meta.get("labels", []))),
             ("base", meta.get("base", {}).get("name", "?")),
             ("strategy", meta.get("strategy", {}).get("used", "?")),
             ("training examples", ", ".join(f"{k} {v}" for k, v in
                                             training.get("examples", {}).items())),
             ("epochs run", training.get("epochs_run", "?")),
             ("best epoch", best.get("epoch", "?"))]
    pairs += [(f"validation {k}", v) for k, v in validation.items()]
    if isinstance(meta.get("int8"), dict):
        pairs.append(("8-bit file", int8_parity_text(as_dict(meta["int8"].get("parity")))))
    body = h.key_values(pairs)
    report = model["evaluation"]
    thresholds = {l: pp["threshold"] for l, pp in meta["post_processing"].items()}
    if report:
        body += _evaluation_table(report, thresholds)
    else:
        body += h.table(["label", "threshold"], [[h.esc(l), f"{thresholds[l]:g}"]
                                                  for l in meta.get("labels", [])], {1})
        body += h.note("no evaluation.json: run 'earmark evaluate --model MODEL_DIR --data "
                       "PREPARED' for per-class metrics, the confusion matrix and PR curves")
    return body


def _evaluation_table(report, thresholds) -> str:
    head = ("<h3>Evaluation</h3>" + h.key_values([
        ("source", f"{report.get('source', '?')} ({report.get('split', 'clips')})"),
        ("examples", report.get("examples", "?")), ("accuracy", report.get("accuracy", "?")),
        ("macro F1", report.get("macro_f1", "?")),
        ("ROC AUC (macro)", report.get("roc_auc_macro", "?"))]))
    at = report.get("at_thresholds", {})
    rows = [[h.esc(l), *(h.esc("–" if m.get(k) is None else m.get(k)) for k in
                         ("precision", "recall", "f1", "support", "roc_auc")),
             h.esc(thresholds.get(l, "–")), h.esc(at.get(l, {}).get("recall", "–"))]
            for l, m in report.get("per_class", {}).items()]
    return head + h.table(["label", "precision", "recall", "F1", "support", "ROC AUC",
                           "threshold", "recall at threshold"], rows, set(range(1, 8)))


def curves_body(model) -> str:
    parts = []
    curves = model["pngs"][TRAINING_CURVES_PLOT] or h.history_png(model["history"])
    if curves:
        parts.append(h.figure(curves, "training: loss and accuracy per epoch "
                                      "(val_: validation split)"))
    if model["pngs"][PRECISION_RECALL_PLOT]:
        parts.append(h.figure(model["pngs"][PRECISION_RECALL_PLOT],
                              "precision-recall per label ('earmark evaluate')"))
    body = f'<div class="plots">{"".join(parts)}</div>' if parts else ""
    if not curves:
        body += h.note("no training history (history.json) in the model folder")
    if not model["pngs"][PRECISION_RECALL_PLOT]:
        body += h.muted("no precision-recall curves: they come with 'earmark evaluate'")
    return body


def confusion_body(model) -> str:
    report = model["evaluation"]
    cm = (report or {}).get("confusion_matrix")
    if not cm:
        return h.note("no confusion matrix: run 'earmark evaluate' on held-out data "
                      "(it writes evaluation.json into the model folder)")
    labels, matrix = cm["labels"], cm["rows_true_cols_predicted"]
    peak = max((v for row in matrix for v in row), default=0) or 1
    rows = "".join(
        f"<tr><th>{h.esc(labels[i])}</th>" + "".join(
            f'<td class="num" style="background:rgba(37,99,235,{0.08 + 0.8 * v / peak:.2f});'
            f'color:{"#fff" if v / peak > 0.5 else "#1d2733"}">{int(v)}</td>' for v in row)
        + "</tr>" for i, row in enumerate(matrix))
    head = "<tr><th>true ↓ predicted →</th>" + "".join(f"<th>{h.esc(l)}</th>" for l in labels)
    return (f'<table class="cm"><thead>{head}</tr></thead><tbody>{rows}</tbody></table>'
            + h.muted(f"{report.get('examples', '?')} examples, {report.get('unit', 'clips')}"))


def event_detection_body(model) -> str:
    meta = model["meta"]
    body = "<h3>Post-processing the model ships</h3>" + shipped_post_processing_body(meta)
    report = model["event_evaluation"]
    if report:
        body += "<h3>Event evaluation</h3>" + event_evaluation_body(report, meta)
    else:
        body += h.note("no event_evaluation.json: run 'earmark evaluate --model MODEL_DIR "
                       "--input recordings/ --annotations tables/' to score the events "
                       "'earmark label' finds against annotated long recordings (event "
                       "F1 at IoU 0.5, onset collar, segment F1, onset and offset errors)")
    return body


def shipped_post_processing_body(meta) -> str:
    """Per label: the settings 'earmark label' uses by default (model.json
    `post_processing`, `segments.model_post_processing`) and the calibration figures."""
    calibration = meta.get("calibration")
    measured = as_dict(as_dict(calibration).get("per_label"))
    background = set(meta["background_labels"])
    rows = []
    for l, (settings, sources) in model_post_processing(meta).items():
        m = as_dict(measured.get(l))
        f1 = next((v for k, v in m.items() if k.startswith("event_f1")), None)
        scores = [fmt_number(f1), fmt_number(m.get("precision")), fmt_number(m.get("recall")),
                  fmt_number(m.get("truth_events"), "d"), fmt_number(m.get("predicted_events"), "d")]
        if l in background:
            rows.append([h.esc(l), *["–"] * len(PP_COLUMNS), "background: not written",
                         *scores])
            continue
        source = "calibrated" if set(sources.values()) == {"model"} \
            else "model threshold, other settings default"
        rows.append([h.esc(l), *(fmt_number(settings.get(f), "g") for f, _ in PP_COLUMNS),
                     h.esc(source), *scores])
    iou = as_dict(calibration).get("min_iou", 0.5)
    table = h.table(["label", *(name for _, name in PP_COLUMNS), "from",
                     f"event F1 (IoU ≥ {iou:g})" if isinstance(iou, (int, float))
                     else "event F1", "precision", "recall", "truth events",
                     "predicted events"], rows,
                   PP_NUMERIC | set(range(len(PP_COLUMNS) + 2, len(PP_COLUMNS) + 7)))
    if not isinstance(calibration, dict):
        return table + h.note("model.json has no calibration: this model was trained before "
                              "'earmark train' calibrated event post-processing, so 'earmark "
                              "label' uses its thresholds with default smoothing, minimum "
                              "duration and gap; retrain to calibrate them per label")
    audio_s = calibration.get("audio_s")
    pairs = [("calibrated on", calibration.get("source", "?"))]
    if calibration.get("split"):
        pairs.append(("split", calibration["split"]))
    if isinstance(audio_s, (int, float)):
        pairs.append(("audio", f"{h.fmt_time(audio_s)} ({audio_s:g} s)"))
    if isinstance(calibration.get("hop_s"), (int, float)):
        pairs.append(("window hop", f"{calibration['hop_s']:g} s"))
    body = h.key_values(pairs) + table
    if not measured:
        body += h.muted("no calibration figures: the settings are earmark's defaults")
    else:
        body += h.muted("event F1, precision and recall: the chosen settings' events against "
                        "the annotated events of the data above (one-to-one matching)")
    return body


def event_evaluation_body(report, meta) -> str:
    """event_evaluation.json (model.event_metrics.score plus what was scored) as key
    facts and a per-label table with the overall (micro-averaged) row."""
    per_label = as_dict(report.get("per_label"))
    overall = as_dict(report.get("overall"))
    first = as_dict(next(iter(per_label.values()), {}))

    def setting(block, key, default):
        value = as_dict(overall.get(block)).get(key, as_dict(first.get(block)).get(key, default))
        return value if isinstance(value, (int, float)) else default

    iou, collar, seg = (setting("iou", "threshold", 0.5), setting("onset_collar", "collar_s", 0.5),
                        setting("segment", "segment_s", 1.0))
    failed = report.get("failed") or []
    problems = report.get("annotation_problems") or []
    pairs = [("recordings", report.get("source", "?")),
             ("annotations", report.get("annotations", "?")),
             ("model scored", report.get("model", "?")),
             ("recordings scored", f"{report.get('recordings_scored', '?')} of "
                                   f"{report.get('recordings_annotated', '?')} annotated"),
             ("labels scored", ", ".join(map(str, report.get("labels_scored") or per_label))),
             ("macro F1 (IoU)", _fmt_text(overall.get("macro_f1_iou")))]
    if failed:
        pairs.append(("recordings failed", len(failed)))
    if report.get("recordings_unannotated"):
        pairs.append(("recordings without annotations (not scored)",
                      len(report["recordings_unannotated"])))
    if report.get("recordings_left_out"):
        pairs.append(("recordings left out (a table could not be read whole; not scored)",
                      len(report["recordings_left_out"])))
    if problems:
        pairs.append(("annotation problems", f"{len(problems)} (listed in "
                                             "event_evaluation.json)"))
    if report.get("annotation_labels_not_in_model"):
        pairs.append(("annotated labels not in the model",
                      ", ".join(map(str, report["annotation_labels_not_in_model"]))))

    def row(name_html, truth, predicted, m):
        return [name_html, fmt_number(truth, "d"), fmt_number(predicted, "d"),
                *(fmt_number(as_dict(m.get("iou")).get(k)) for k in ("precision", "recall", "f1")),
                fmt_number(as_dict(m.get("onset_collar")).get("f1")),
                fmt_number(as_dict(m.get("segment")).get("f1")),
                fmt_number(m.get("median_onset_error_s")), fmt_number(m.get("median_offset_error_s"))]

    rows = [row(h.esc(l), as_dict(m).get("truth"), as_dict(m).get("predicted"), as_dict(m))
            for l, m in per_label.items()]
    if overall:
        block = as_dict(overall.get("iou"))
        truths = [as_dict(m).get("truth") for m in per_label.values()]
        preds = [as_dict(m).get("predicted") for m in per_label.values()]
        truth = (sum(truths) if truths and all(isinstance(t, int) for t in truths)
                 else _sum(block.get("tp"), block.get("fn")))
        predicted = (sum(preds) if preds and all(isinstance(p, int) for p in preds)
                     else _sum(block.get("tp"), block.get("fp")))
        rows.append(row("<b>overall</b> (micro)", truth, predicted, overall))
    body = h.key_values(pairs) + h.table(
        ["label", "truth events", "predicted", f"precision (IoU ≥ {iou:g})",
         f"recall (IoU ≥ {iou:g})", f"F1 (IoU ≥ {iou:g})", f"onset F1 (±{collar:g} s)",
         f"segment F1 ({seg:g} s)", "median onset error (s)", "median offset error (s)"],
        rows, set(range(1, 10)))
    if not per_label:
        body += h.note("event_evaluation.json scores no label")
    body += _post_processing_drift(report, meta)
    if failed:
        names = ", ".join(str(as_dict(f).get("file", "?")) for f in failed[:5])
        body += h.note(f"{len(failed)} recordings could not be decoded and were not scored: "
                       f"{names}{' …' if len(failed) > 5 else ''}")
    return body


def _fmt_text(value) -> str:
    """A metric for h.key_values (which escapes): '–' when missing."""
    return "–" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def _sum(a, b):
    return a + b if isinstance(a, int) and isinstance(b, int) else None


def _post_processing_drift(report, meta) -> str:
    """A note when the evaluation scored other settings than model.json ships now."""
    shipped = as_dict(meta.get("post_processing"))
    used = as_dict(report.get("post_processing"))

    def same(a, b):
        try:  # settings an older evaluate wrote without a field differ from every card
            return PostProcessing.from_dict(a) == PostProcessing.from_dict(b)
        except (KeyError, TypeError, ValueError):
            return False
    differ = [l for l, settings in used.items()
              if l in shipped and not same(as_dict(settings), as_dict(shipped[l]))]
    if not differ:
        return ""
    return h.note(f"event_evaluation.json scored other post-processing than model.json ships "
                  f"now for {', '.join(map(str, differ))}: re-run 'earmark evaluate "
                  "--annotations' to score the current settings")
