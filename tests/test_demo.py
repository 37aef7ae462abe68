"""`earmark demo` end to end as a new user runs it (the real command, offline), its scoring
against the planted truth, and the one-line errors of every subcommand."""
import csv
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from earmark import cli, demo


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
    summary = demo_run["summary"]
    for label in demo.EVENT_LABELS:
        s = summary["scores"][label]
        assert s["planted"] >= 5, s
        assert s["recall"] >= 0.9 and s["precision"] >= 0.9, (label, s)
    # the scores printed are those of the segments written: recompute from the files
    with open(demo_run["out"] / "truth.csv") as f:
        truth = [(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in csv.DictReader(f)]
    segments = demo.event_segments(summary["labels_dir"])
    assert demo.match_events(truth, segments) == summary["scores"]
    assert len(truth) == summary["planted"]


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


def test_event_matching_counts_misses_and_false_alarms():
    truth = [(10.0, 13.0, "snore"), (20.0, 22.0, "snore"), (30.0, 33.0, "other")]
    segments = [(9.5, 13.5, "snore", 0.9),   # covers the first snore
                (21.5, 23.0, "snore", 0.8),  # a quarter of the second: not found
                (40.0, 41.0, "snore", 0.7),  # overlaps nothing: a false alarm
                (30.0, 33.0, "snore", 0.6)]  # right time, wrong label: a false alarm
    s = demo.match_events(truth, segments)
    assert s["snore"]["planted"] == 2 and s["snore"]["found"] == 1
    assert s["snore"]["false_alarms"] == 2 and s["snore"]["precision"] == 0.5
    assert s["other"] == {"planted": 1, "found": 0, "segments": 0, "false_alarms": 0,
                          "precision": 0.0, "recall": 0.0, "f1": 0.0}


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
    from pipelines import prepare
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
