"""`earmark report`: a real labeling run and a real (tiny) model → one self-contained HTML
page, rendered in headless Chromium through the system chromedriver."""
import json
import os
import re
import shutil
from html import unescape

import numpy as np
import pytest

from earmark import report
from earmark.model.errors import UserError
from tests.fixtures import ODD_NAME, make_corpus, make_prepared, train_args, write_annotations


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A trained model (with evaluation.json and event_evaluation.json), a corpus and a
    finished `earmark label` run (one post-processing value set by a flag)."""
    from earmark.commands import evaluate, train
    from earmark.pipelines import label
    root = tmp_path_factory.mktemp("report")
    prepared = make_prepared(str(root / "prepared"))
    model_dir = str(root / "model")
    train.main(train_args(prepared, model_dir, root / "cache", "--epochs", "4"))
    evaluate.main(["--model", model_dir, "--data", prepared])
    corpus = make_corpus(str(root / "corpus"))
    evaluate.main(["--model", model_dir, "--input", corpus, "--annotations",
                   write_annotations(str(root / "annotations.csv"))])
    out = str(root / "labels")
    label.main(["--model", model_dir, "--input", corpus, "--output", out,
                "--formats", "csv,raven,audacity,jsonl", "--scores",
                "--min-duration", "class_1=0.25"])
    return {"root": root, "model": model_dir, "corpus": corpus, "run": out}


@pytest.fixture(scope="module")
def page(built):
    """The report of the run and the model, with the recordings found under --audio-root."""
    path = report.main(["--run", built["run"], "--model", built["model"],
                        "--audio-root", built["corpus"], "--top", "4"])
    with open(path, encoding="utf-8") as f:
        return path, f.read()


def segments(run_dir):
    return report.read_segments(run_dir)


def test_default_output_is_report_html_in_the_run_dir(built, page, capsys):
    path, _ = page
    assert path == os.path.join(built["run"], "report.html")
    report.main(["--model", built["model"]])
    assert capsys.readouterr().out.strip() == f"report: {os.path.join(built['model'], 'report.html')}"


def test_page_is_self_contained(page):
    _, html = page
    for ref in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html):
        assert ref.startswith(("data:", "#")), ref
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "@import" not in html and "url(" not in html


def test_file_names_are_escaped(page):
    _, html = page
    assert ODD_NAME not in html and "<b>&" not in html
    assert "&lt;b&gt;&amp;x.wav" in html


def test_model_section_names_the_model_that_labeled_the_run(built, page):
    _, html = page
    with open(os.path.join(built["run"], "run.json")) as f:
        model_id = json.load(f)["model_id"]
    assert html.count(f"<td>{model_id}</td>") == 2            # summary and model metrics
    assert "describes another model" not in html


def test_report_html_tables_escape_labels():
    from earmark import report_html as h
    cell = h.table(["label"], [[h.esc('<img src="http://x">')]])
    assert "<img" not in cell and "&lt;img src=&quot;http://x&quot;&gt;" in cell


def test_a_night_of_thousands_of_segments_stays_a_small_timeline():
    from earmark import report_html as h
    night_s = 8 * 3600.0
    segs = [(t, t + 1.5, "snore" if i % 3 else "cough", 0.9)
            for i, t in enumerate(np.arange(0, night_s - 2, 5.0))]
    svg = h.timeline_svg(night_s, segs, ["snore", "cough"])
    assert len(segs) > 5000 and svg.count("<rect") <= 1 + 2 * h.TIMELINE_PX
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert ticks[:3] == ["0:00", "1:00:00", "2:00:00"] and len(ticks) <= 9


def test_report_starts_without_beam_or_tensorflow():
    import subprocess
    import sys
    code = ("import sys, earmark.report; bad = {'apache_beam', 'tensorflow'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("args,message", [
    ([], "give --run LABEL_OUTPUT_DIR, --model MODEL_DIR and/or --review"),
    (["--run", "{tmp}"], "no run.json; point it at the --output of 'earmark label'"),
    (["--run", "{tmp}/absent"], "no such folder"),
    (["--model", "{tmp}"], "no model.json there; point it at the --model-dir of 'earmark train'"),
    (["--run", "gs://bucket/labels"], "local paths only"),
    (["--model", "{model}", "--evaluation", "{tmp}"], "no evaluation.json there"),
    (["--model", "{model}", "--output", "{tmp}/absent/r.html"], "does not exist"),
])
def test_user_errors_say_what_is_wrong_and_how_to_fix_it(built, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, model=built["model"]) for a in args]
    with pytest.raises(UserError) as e:
        report.main(args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_audio_and_evaluation_degrade_to_notes(built, tmp_path):
    """Recordings gone, no scores, no evaluation.json, no history: notes, not a crash."""
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("scores", "report.html"))
    (run / "dead_letter.jsonl").write_text("")   # no failed path to guess the audio root from
    summary = json.loads((run / "run.json").read_text())
    summary["input"] = str(tmp_path / "moved-away")  # the recordings are gone
    (run / "run.json").write_text(json.dumps(summary))
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(os.path.join(built["model"], "model.json"), model / "model.json")
    path = report.main(["--run", str(run), "--model", str(model), "--max-recordings", "1"])
    html = open(path, encoding="utf-8").read()
    assert html.count("audio not found") == min(12, len(segments(built["run"])))
    assert "no evaluation.json" in html and "no confusion matrix" in html
    assert "no event_evaluation.json" in html
    assert "label with --scores" in html and "2 more recordings not drawn (of 3)" in html
    assert "<img" not in html
    assert "run.json counts 1 failed files, but dead_letter.jsonl lists none" in html


# --- event detection -------------------------------------------------------------------------

def section_text(html, section_id):
    """The text of one section (tags dropped, whitespace collapsed)."""
    start = html.index(f'<section id="{section_id}">')
    depth, i = 0, start
    while True:   # to the matching </section>
        opening, closing = html.find("<section", i + 1), html.find("</section>", i + 1)
        if opening != -1 and opening < closing:
            depth, i = depth + 1, opening
        elif depth:
            depth, i = depth - 1, closing
        else:
            text = re.sub(r"<[^>]+>", " ", html[start:closing])
            return " ".join(unescape(text).split())


def model_copy(built, tmp_path, **changes):
    """A model dir holding the built model.json with `changes` (None: the key removed)."""
    model = tmp_path / "model"
    model.mkdir()
    with open(os.path.join(built["model"], "model.json")) as f:
        meta = json.load(f)
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (model / "model.json").write_text(json.dumps(meta))
    return model


CALIBRATED = dict(
    post_processing={"class_0": {"threshold": 0.4, "smoothing_windows": 1, "min_duration_s": 0.0,
                                 "max_gap_s": 0.0, "extend_s": 0.0},
                     "class_1": {"threshold": 0.62, "smoothing_windows": 3,
                                 "min_duration_s": 0.75, "max_gap_s": 0.25, "extend_s": 0.0}},
    background_labels=["class_0"],
    calibration={"source": "4 annotated validation recordings", "split": "validation",
                 "audio_s": 1800.0, "hop_s": 0.48, "min_iou": 0.5,
                 "per_label": {"class_1": {"event_f1_iou_0.5": 0.8771, "precision": 0.9012,
                                           "recall": 0.8531, "truth_events": 41,
                                           "predicted_events": 39}}})


def block(f1, **counts):
    return {"tp": 1, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f1": f1, **counts}


EVENT_EVALUATION = {   # the shape of model/evaluate.py's event_evaluation.json
    "model": "/somewhere/model", "unit": "events", "source": "/data/<b>&nights",
    "annotations": "/data/tables", "labels_scored": ["class_1"],
    "post_processing": {"class_1": CALIBRATED["post_processing"]["class_1"]},
    "recordings_annotated": 5, "recordings_scored": 4, "recordings_unannotated": ["x.wav"],
    "failed": [{"file": "<i>bad.wav", "reason": "decode"}], "annotation_problems": [],
    "annotation_labels_not_in_model": [],
    "per_label": {"class_1": {"truth": 52, "predicted": 47, "iou": block(0.8111, threshold=0.5),
                              "onset_collar": block(0.7222, collar_s=0.5),
                              "median_onset_error_s": 0.1234, "median_offset_error_s": 0.2345,
                              "segment": block(0.6333, segment_s=1.0)}},
    "overall": {"iou": block(0.8111, threshold=0.5, tp=45, fp=2, fn=7),
                "onset_collar": block(0.7222, collar_s=0.5),
                "segment": block(0.6333, segment_s=1.0), "macro_f1_iou": 0.8111,
                "median_onset_error_s": 0.1234, "median_offset_error_s": 0.2345},
    "recordings": 4}


def test_event_detection_section_shows_calibration_and_event_scores(built, tmp_path):
    model = model_copy(built, tmp_path, **CALIBRATED)
    (model / "event_evaluation.json").write_text(json.dumps(EVENT_EVALUATION))
    html = open(report.main(["--model", str(model)]), encoding="utf-8").read()
    text = section_text(html, "event-detection")
    # (a) what the model ships, calibrated on which data
    assert "calibrated on 4 annotated validation recordings split validation" in text
    assert "30:00.0 (1800 s)" in text
    # (model.json from before low_threshold: the threshold, no hysteresis)
    assert "class_1 0.62 0.62 3 0.75 0.25 0 calibrated 0.877 0.901 0.853 41 39" in text
    assert "class_0 – – – – – – background: not written" in text
    # (b) the event evaluation: per label and overall
    assert "F1 (IoU ≥ 0.5) onset F1 (±0.5 s) segment F1 (1 s)" in text
    assert "class_1 52 47 1.000 1.000 0.811 0.722 0.633 0.123 0.234" in text
    assert "overall (micro) 52 47 1.000 1.000 0.811 0.722 0.633 0.123 0.234" in text
    assert "4 of 5 annotated" in text and "1 recordings could not be decoded" in text
    assert "no event_evaluation.json" not in text and "other post-processing" not in text
    assert "/data/&lt;b&gt;&amp;nights" in html and "&lt;i&gt;bad.wav" in html
    assert "<b>&" not in html and "<i>bad" not in html


def test_event_evaluation_flag_takes_a_file_or_its_folder(built, tmp_path):
    model = model_copy(built, tmp_path, **CALIBRATED)
    elsewhere = tmp_path / "eval"
    elsewhere.mkdir()
    shipped = CALIBRATED["post_processing"]["class_1"]
    older = dict(EVENT_EVALUATION, post_processing={"class_1": dict(shipped, threshold=0.4)})
    (elsewhere / "event_evaluation.json").write_text(json.dumps(older))
    for given in (elsewhere, elsewhere / "event_evaluation.json"):
        html = open(report.main(["--model", str(model), "--event-evaluation", str(given),
                                 "--output", str(tmp_path / "r.html")]), encoding="utf-8").read()
        text = section_text(html, "event-detection")
        assert "overall (micro) 52 47" in text
        assert "scored other post-processing than model.json ships now for class_1" in text
    with pytest.raises(UserError, match="no event_evaluation.json there"):
        report.main(["--model", str(model), "--event-evaluation", str(tmp_path / "absent")])
    with pytest.raises(UserError, match="not an event evaluation"):
        report.main(["--model", str(model), "--event-evaluation",
                     os.path.join(built["model"], "evaluation.json")])


def test_old_model_json_without_event_keys_still_renders(built, tmp_path):
    """Trained before calibration: no post_processing, background_labels or calibration,
    and no event_evaluation.json: notes and the thresholds, not a KeyError."""
    model = model_copy(built, tmp_path, format_version=1, post_processing=None,
                       background_labels=None, calibration=None, thresholds={"class_0": 0.7})
    html = open(report.main(["--model", str(model)]), encoding="utf-8").read()
    text = section_text(html, "event-detection")
    assert "model.json has no calibration" in text
    assert "class_0 0.7 0.7 1 0 0 0 model threshold, other settings default – – – – –" in text
    assert "class_1 0.5 0.5 1 0 0 0 model threshold, other settings default" in text
    assert ("no event_evaluation.json: run 'earmark evaluate --model MODEL_DIR --input "
            "recordings/ --annotations tables/'") in text


def test_real_event_evaluation_of_an_uncalibrated_model_renders(built, page):
    """The fixture's model: calibrated on nothing (no recordings.jsonl), scored for events
    on the corpus by 'earmark evaluate --annotations'."""
    _, html = page
    text = section_text(html, "event-detection")
    with open(os.path.join(built["model"], "event_evaluation.json")) as f:
        events = json.load(f)
    assert "calibrated on none: the prepared data has no recordings.jsonl" in text
    assert "no calibration figures" in text
    truth = sum(m["truth"] for m in events["per_label"].values())
    assert truth == 6 and f"overall (micro) {truth} " in text
    assert f"{events['overall']['iou']['f1']:.3f}" in text
    assert "recordings without annotations (not scored) 1" in text   # broken.wav


def test_run_summary_shows_post_processing_and_where_it_came_from(page):
    _, html = page
    text = section_text(html, "summary")
    assert ("label threshold low threshold smoothing (windows) min duration (s) max gap (s)"
            in text)
    assert "class_0 0.5 model 0.5 model 1 model 0 model 0 model 0 model yes" in text
    assert "class_1 0.5 model 0.5 model 1 model 0.25 flag 0 model 0 model yes" in text
    assert "labels not written" not in text


def test_run_summary_names_unwritten_labels_and_old_runs_render(built, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(built["run"], run, ignore=shutil.ignore_patterns("report.html"))
    summary = json.loads((run / "run.json").read_text())
    summary["post_processing"]["class_0"]["written"] = False
    summary["post_processing"]["class_0"]["from"]["threshold"] = "default"
    (run / "run.json").write_text(json.dumps(summary))
    text = section_text(open(report.main(["--run", str(run), "--top", "0"]),
                             encoding="utf-8").read(), "summary")
    assert "labels not written (background) class_0" in text
    assert "class_0 0.5 default 0.5 model 1 model 0 model 0 model 0 model no (background)" in text
    for entry in summary["post_processing"].values():   # a run from before low_threshold
        del entry["settings"]["low_threshold"], entry["from"]["low_threshold"]
    (run / "run.json").write_text(json.dumps(summary))
    text = section_text(open(report.main(["--run", str(run), "--top", "0"]),
                             encoding="utf-8").read(), "summary")
    assert "class_0 0.5 default – 1 model 0 model 0 model 0 model no (background)" in text
    del summary["post_processing"]
    (run / "run.json").write_text(json.dumps(summary))
    text = section_text(open(report.main(["--run", str(run), "--top", "0"]),
                             encoding="utf-8").read(), "summary")
    assert "records no per-label post-processing" in text and "class_0 0.5" in text


ODD_LABEL = 'snore, "loud" é'  # a comma, a double quote and non-ASCII


def test_a_label_with_a_comma_a_quote_and_non_ascii_reaches_the_page(tmp_path):
    """A run folder written by label's own writers (`label_formats`): the report reads the
    label back whole from segments.csv and from the scores CSV's header."""
    from earmark.model.segments import Segment
    from earmark.pipelines import label_formats
    run, key = tmp_path / "run", 'night "1", é.wav'
    segs = [Segment(0.5, 1.5, ODD_LABEL, 0.9, key, "m1"), Segment(2.0, 3.0, "other", 0.6, key, "m1")]
    (run / "scores").mkdir(parents=True)
    (run / label_formats.SEGMENTS_CSV).write_bytes(label_formats.segments_csv(segs).encode())
    scores = label_formats.scores_csv(np.array([[0.9, 0.1], [0.2, 0.7], [0.1, 0.8]]),
                                      [ODD_LABEL, "other"], 0.96)
    (run / "scores" / f"{key}.csv").write_bytes(scores.encode())
    (run / label_formats.RUN_FILE).write_text(json.dumps(
        {"labels": [ODD_LABEL, "other"], "model_id": "m1", "files_labeled": 1}))

    assert report.read_segments(str(run)) == segs
    starts, by_label = report.read_scores(str(run), key)
    assert starts.tolist() == [0.0, 0.96, 1.92]
    assert list(by_label) == [ODD_LABEL, "other"] and by_label[ODD_LABEL].tolist() == [0.9, 0.2, 0.1]
    html = open(report.main(["--run", str(run), "--top", "0"]), encoding="utf-8").read()
    assert f"{ODD_LABEL} 1 " in section_text(html, "segments-per-label")
    assert key in section_text(html, "timelines") and f"{ODD_LABEL}: 0.5 s" in unescape(html)
    assert ODD_LABEL not in html   # escaped wherever it is shown
    assert html.count("<polyline") == 2   # one score trace per label, the odd one included


# --- in the browser -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from tests.browser import chromium
    with chromium() as driver:
        yield driver


def test_page_renders_in_chromium_with_every_section_and_no_console_errors(built, page, browser):
    from selenium.webdriver.common.by import By
    path, _ = page
    browser.get("file://" + path)
    assert browser.title.startswith("earmark report")
    for section_id in ("summary", "segments-per-label", "timelines", "top-segments",
                       "dead-letter", "model", "metrics", "event-detection", "curves",
                       "confusion-matrix"):
        element = browser.find_element(By.ID, section_id)
        assert element.is_displayed() and len(element.text) > 20, section_id
    with open(os.path.join(built["run"], "run.json")) as f:
        run = json.load(f)
    rows = browser.find_elements(By.CSS_SELECTOR, "#timelines tr.timeline-row")
    assert len(rows) == run["files_labeled"] == 3
    assert "<b>&x.wav" in browser.find_element(By.ID, "timelines").text   # shown as text
    boxes = browser.find_elements(By.CSS_SELECTOR, "#timelines rect.seg")
    assert len(boxes) >= len({(s.file, s.label) for s in segments(built["run"])})
    images = browser.find_elements(By.CSS_SELECTOR, "#top-segments img")
    assert len(images) == min(4, len(segments(built["run"])))
    for img in images:
        assert browser.execute_script("return arguments[0].complete && "
                                      "arguments[0].naturalWidth", img) > 100
    for img in browser.find_elements(By.CSS_SELECTOR, "#curves img"):
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 100
    assert "broken.wav" in browser.find_element(By.ID, "dead-letter").text
    cells = browser.find_elements(By.CSS_SELECTOR, "#confusion-matrix td")
    assert len(cells) == 4 and sum(int(c.text) for c in cells) == 8
    if os.environ.get("EARMARK_REPORT_SCREENSHOT"):
        browser.set_window_size(1280, browser.execute_script("return document.body.scrollHeight"))
        browser.save_screenshot(os.environ["EARMARK_REPORT_SCREENSHOT"])
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


def test_evaluate_events_leaves_out_what_the_tables_could_not_say(built, tmp_path, capsys):
    """A recording whose table cannot be read is listed, not scored as all background; a
    segment over a row that could not be used is not scored (a false alarm or a hit?)."""
    from earmark.commands import evaluate
    tables = tmp_path / "tables"
    (tables / "night").mkdir(parents=True)
    # a.wav: class_0 0-2 s, class_1 3.5-6 s; the class_1 row has no label
    (tables / "a.csv").write_text("start_s,end_s,label\n0,2,class_0\n3.5,6,\n")
    (tables / "night" / "c.txt").write_bytes(b"0\t3\tclass_0\n5\t7\tclass_\x81\n")
    report = evaluate.main(["--model", built["model"], "--input", built["corpus"],
                            "--annotations", str(tables), "--report", str(tmp_path / "r")])
    capsys.readouterr()
    assert [r["file"] for r in report["recordings_left_out"]] == ["night/c.flac"]
    assert report["recordings_scored"] == 1 and ODD_NAME in report["recordings_unannotated"]
    # the class_1 event at 3.5-6 s is unlabeled in the table: finding it is no false alarm
    assert report["per_label"]["class_1"]["predicted"] == 0


def test_model_section_says_what_train_measured_of_the_8_bit_file(built, tmp_path):
    """A model trained with --int8: the Metrics section names its parity and what label's
    auto does with it; the run summary names the arithmetic the run used."""
    held = {"file": "model_int8.tflite", "bytes": 1, "sha256": "x", "parity": {
        "holds": True, "event_f1": 0.891, "reference_event_f1": 0.9, "within": 0.01,
        "reference_precision": "bfloat16"}}
    unchecked = {"file": "model_int8.tflite", "bytes": 1, "sha256": "x"}
    for name, int8, says in (
            ("held", held, "8-bit file event F1 0.891 on the calibration audio against 0.900 "
                           "in bfloat16: label's --precision auto runs it"),
            ("unchecked", unchecked, "8-bit file shipped, not checked (trained before parity "
                                     "was measured): label runs it with --precision int8 only")):
        (tmp_path / name).mkdir()
        model = model_copy(built, tmp_path / name, int8=int8)
        html = open(report.main(["--model", str(model)]), encoding="utf-8").read()
        assert says in section_text(html, "metrics")
    html = open(report.main(["--run", built["run"], "--output", str(tmp_path / "run.html")]),
                encoding="utf-8").read()
    with open(os.path.join(built["run"], "run.json")) as f:
        ran = json.load(f)["numeric_precision"]["here"]
    assert f"<th>arithmetic</th><td>{ran}</td>" in html
