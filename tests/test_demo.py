"""`earmark demo` end to end as a new user runs it (the real command, offline), its scoring
against the planted truth (model.event_metrics, as `earmark evaluate --annotations`), and
the one-line errors of every subcommand."""
import csv
import json
import os
import subprocess
import sys
import urllib.request

import pytest
import soundfile as sf

from earmark import cli, demo
from earmark.model import event_metrics
from earmark.model.events import Event
from earmark.model.features import FeatureConfig
from earmark.pipelines import label_formats

pytestmark = pytest.mark.slow  # the real demo command: generate, prepare, train, label (minutes)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`earmark demo` with its defaults, as the README says, in a fresh folder."""
    out = tmp_path_factory.mktemp("demo") / "earmark-demo"
    r = subprocess.run([sys.executable, "-m", "earmark", "demo", "--output", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(out / "demo.json") as f:
        summary = json.load(f)
    return {"out": out, "stdout": r.stdout, "stderr": r.stderr, "summary": summary}


def test_demo_finds_the_planted_events(demo_run):
    """With the post-processing train calibrated (no flags), scored as `earmark evaluate
    --annotations` scores events: IoU >= 0.5, one-to-one."""
    summary = demo_run["summary"]
    for label in demo.EVENT_LABELS:
        s = summary["scores"][label]
        assert s["planted"] >= 5, s
        assert s["recall"] >= 0.9 and s["precision"] >= 0.9, (label, s)


def test_demo_scores_are_those_of_the_written_segments(demo_run):
    """Recompute the printed scores from truth.csv and segments.csv with model.event_metrics."""
    summary, out = demo_run["summary"], demo_run["out"]
    with open(out / "truth.csv") as f:
        truth = [Event(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in csv.DictReader(f)]
    rows = label_formats.read_segments_csv(
        (out / "labels" / label_formats.SEGMENTS_CSV).read_bytes().decode())
    assert {r.file for r in rows} <= {"night.flac"}
    assert {r.label for r in rows} <= set(demo.EVENT_LABELS)  # background is not written
    found = [Event(r.start_s, r.end_s, r.label) for r in rows]
    duration = sf.info(str(out / "night" / "night.flac")).duration
    assert duration == pytest.approx(summary["night_s"])
    per_label = event_metrics.score({"night": truth}, {"night": found}, {"night": duration},
                                    list(demo.EVENT_LABELS), min_iou=0.5)["per_label"]
    assert len(truth) == summary["planted"]
    for label in demo.EVENT_LABELS:
        s, iou = summary["scores"][label], per_label[label]["iou"]
        assert (s["planted"], s["segments"]) == (per_label[label]["truth"],
                                                 per_label[label]["predicted"]), label
        assert (s["found"], s["false_alarms"]) == (iou["tp"], iou["fp"]), label
        for key in ("precision", "recall", "f1"):
            assert s[key] == pytest.approx(iou[key], abs=6e-4), (label, key)
        # ... and the table prints those numbers
        printed = [l.split() for l in demo_run["stdout"].splitlines() if l.startswith(label + " ")]
        assert printed[-1] == [label, str(s["planted"]), str(s["found"]), str(s["false_alarms"]),
                               f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}"]


def test_demo_labels_with_the_calibrated_post_processing(demo_run):
    """No post-processing flags: label used model.json's settings, and the demo said which."""
    out, stdout = demo_run["out"], demo_run["stdout"]
    with open(out / "model" / "model.json") as f:
        meta = json.load(f)
    with open(out / "labels" / "run.json") as f:
        used = json.load(f)["post_processing"]
    assert meta["background_labels"] == ["background"] and not used["background"]["written"]
    assert "background  not written" in stdout
    assert stdout.count("demo: label uses the event post-processing train chose") == 1
    for label in demo.EVENT_LABELS:
        assert set(used[label]["from"].values()) == {"model"}, used[label]
        assert used[label]["settings"] == meta["post_processing"][label]
        pp = meta["post_processing"][label]
        assert f"threshold {pp['threshold']:g}, smoothing {pp['smoothing_windows']} window" in stdout


def test_demo_says_what_it_used_and_where_everything_is(demo_run):
    stdout = demo_run["stdout"]
    assert "demo: base " in stdout and summary_why(demo_run) in stdout
    for step in ("prepare", "train and evaluate", "label", "report"):
        assert f"demo: {step} done in" in stdout
    assert "planted event" in stdout and "MISSED" not in stdout
    assert "demo: test split: accuracy" in stdout
    assert os.path.exists(demo_run["out"] / "model" / "evaluation.json")
    for path in ("model", "labels/segments.csv", "labels/run.json", "report.html", "truth.csv"):
        assert os.path.exists(demo_run["out"] / path), path
        assert path.split("/")[-1] in stdout or path in ("labels/run.json",)
    assert "Traceback" not in demo_run["stderr"]


def summary_why(demo_run):
    return demo_run["summary"]["why"]


def test_auto_base_prefers_cached_imagenet_then_musicnn(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    base, weights, why = demo.choose_base("auto", None)
    assert base in ("musicnn", "inception_v3") and "download" in why
    cached = tmp_path / ".keras" / "models" / demo.IMAGENET_NOTOP_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert demo.choose_base("auto", None)[:2] == ("inception_v3", "imagenet")
    assert demo.choose_base("vgg16", "none") == ("vgg16", "none", "as asked")


def test_event_matching_is_iou_one_to_one():
    truth = [(10.0, 13.0, "snore"), (20.0, 22.0, "snore"), (30.0, 33.0, "other"),
             (50.0, 52.0, "other"), (53.0, 55.0, "other")]
    segments = [(9.5, 13.5, "snore", 0.9),   # IoU 0.75 with the first snore: found
                (21.0, 23.0, "snore", 0.8),  # IoU 1/3 with the second: missed, a false alarm
                (40.0, 41.0, "snore", 0.7),  # overlaps nothing: a false alarm
                (30.0, 33.0, "snore", 0.6),  # right time, wrong label: a false alarm
                (50.0, 55.0, "other", 0.9)]  # covers two events: IoU 0.4 each, matches neither
    s = demo.score_events(truth, segments, 60.0)
    assert s["snore"] == {"planted": 2, "found": 1, "segments": 4, "false_alarms": 3,
                          "precision": 0.25, "recall": 0.5, "f1": 0.333}
    assert s["other"] == {"planted": 3, "found": 0, "segments": 1, "false_alarms": 1,
                          "precision": 0.0, "recall": 0.0, "f1": 0.0}
    rows = demo.timeline_rows(truth, segments)
    assert "9.5-13.5 s (0.90) IoU 0.75" in rows[0]
    assert "MISSED (too little overlap: 21.0-23.0 s (0.80) IoU 0.33)" in rows[1]
    assert rows[2].endswith("other   MISSED")
    assert sum("false alarm" in r for r in rows) == 4
    # a segment that fits two planted events counts once
    two = [(10.0, 12.0, "snore"), (10.2, 12.2, "snore")]
    assert demo.score_events(two, [(10.0, 12.0, "snore", 0.9)], 20.0)["snore"]["found"] == 1


def test_post_processing_lines_show_what_label_uses(tmp_path):
    meta = {"labels": ["background", "other", "snore"], "background_labels": ["background"],
            "feature_config": FeatureConfig().to_dict(),
            "post_processing": {"other": {"threshold": 0.7, "smoothing_windows": 3,
                                          "min_duration_s": 0.0, "max_gap_s": 0.5},
                                "snore": {"threshold": 0.65, "smoothing_windows": 1,
                                          "min_duration_s": 0.25, "max_gap_s": 0.0,
                                          "low_threshold": 0.3}},
            "calibration": {"source": "validation clips concatenated into one sequence",
                            "per_label": {l: {"event_f1_iou_0.5": 1.0, "precision": 1.0,
                                              "recall": 1.0} for l in ("other", "snore")}}}
    (tmp_path / "model.json").write_text(json.dumps(meta))
    lines = demo.post_processing_lines(str(tmp_path))
    assert "calibrated on the validation clips concatenated" in lines[0]
    assert lines[1].split() == ["background", "not", "written", "(a", "background", "label)"]
    assert "other       threshold 0.7, smoothing 3 windows, min duration 0 s, max gap 0.5 s" in lines[2]
    assert "snore       threshold 0.65, low threshold 0.3, smoothing 1 window, min duration " \
           "0.25 s" in lines[3]   # the low threshold only where it is below the threshold
    del meta["post_processing"], meta["calibration"]  # a model from before calibration
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert all("(defaults: not calibrated)" in l for l in demo.post_processing_lines(str(tmp_path))[2:])


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"earmark {command}" in out and "example" in out


@pytest.fixture(scope="module")
def log_mel_data(demo_run):
    """The demo corpus prepared for an image base (log-mel), at a resampling quality no
    model of the demo's uses: features unlike the demo model's, whichever base it chose."""
    from earmark.pipelines import prepare
    out = str(demo_run["out"] / "prepared-log-mel")
    prepare.run(["--input", str(demo_run["out"] / "corpus"), "--output", out,
                 "--resample-quality", "MQ"])
    return out


def _errors(demo_run, log_mel_data, tmp_path):
    bad_manifest = tmp_path / "bad.csv"
    bad_manifest.write_text("path,label\na.wav,snore\nb.wav,\n")
    model = str(demo_run["out"] / "model")
    return {
        "missing input": (["prepare", "--input", "/not/here", "--output", str(tmp_path / "o")],
                          "does not exist"),
        "bad manifest row": (["prepare", "--manifest", str(bad_manifest), "--output", str(tmp_path / "o")],
                             "line 3"),
        "unknown base": (["train", "--data", log_mel_data, "--model-dir", str(tmp_path / "m"),
                          "--base", "alexnet"], "invalid choice"),
        "unknown flag": (["label", "--model", model, "--input", "x", "--output", "y", "--treshold", "1"],
                         "--treshold"),
        "model/feature mismatch": (["evaluate", "--model", model, "--data", log_mel_data],
                                   "another FeatureConfig"),
        "failed weights download": (["train", "--data", log_mel_data, "--model-dir", str(tmp_path / "m"),
                                     "--base", "mobilenet_v2", "--weights", "imagenet",
                                     "--cache-dir", str(tmp_path / "c")], "--weights PATH"),
        "not a model": (["label", "--model", str(tmp_path), "--input", "x", "--output", "y"],
                        "model.json"),
        "not a run": (["report", "--run", str(tmp_path)], "run.json"),
        "unknown command": (["lable"], "invalid choice"),
    }


ERROR_CASES = ["missing input", "bad manifest row", "unknown base", "unknown flag",
               "model/feature mismatch", "failed weights download", "not a model", "not a run",
               "unknown command"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_user_errors_are_one_line_with_the_fix(case, demo_run, log_mel_data, tmp_path, capsys,
                                               monkeypatch):
    argv, expected = _errors(demo_run, log_mel_data, tmp_path)[case]
    if case == "failed weights download":  # a real download, through an unreachable proxy
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(var, "http://127.0.0.1:9")
    try:
        code = cli.main(argv)
    finally:
        urllib.request.install_opener(None)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("earmark: error:")]
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert expected in lines[0] and "Traceback" not in err and "usage:" not in err
