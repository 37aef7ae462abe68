"""Hostile flag values are refused as they are parsed, with one line naming the flag, the
value and what a good one is (`earmark: error: --threshold 2: must be a number in [0, 1],
e.g. 0.7 ...`); every check of the model and of the flags against it comes before
--output is created or claimed; and a run that labeled none of its files says how many of
*its* files failed and names a dead letter that is there (issue 27).

The parse-time tests call the commands' parsers (no model, no pipeline); the others use
the session's tiny model (tests/conftest.py `tiny_model`)."""
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from earmark import cli
from earmark.model.errors import UserError
from earmark.model.segments import PostProcessing
from earmark.pipelines import label_flags, prepare_flags
from tests.fixtures import files_under

LABEL_ARGS = ["--model", "m", "--input", "in", "--output", "out"]

# (flag, value, what the message must say it must be)
BAD_LABEL_VALUES = [
    ("--threshold", "2", "a number in [0, 1]"),
    ("--threshold", "-1", "a number in [0, 1]"),
    ("--threshold", "nan", "a number in [0, 1]"),
    ("--threshold", "inf", "a number in [0, 1]"),
    ("--threshold", "snore=1.5", "a number in [0, 1]"),
    ("--threshold", "snore=", "a number in [0, 1]"),
    ("--threshold", "high", "a number in [0, 1]"),
    ("--smoothing", "0", "a whole number >= 1"),
    ("--smoothing", "2.5", "a whole number >= 1"),
    ("--smoothing", "snore=-3", "a whole number >= 1"),
    ("--min-duration", "-0.5", "a number >= 0"),
    ("--min-duration", "soon", "a number >= 0"),
    ("--max-gap", "inf", "a number >= 0"),
    ("--max-gap", "nan", "a number >= 0"),
    ("--extend", "-5", "a number >= 0"),
    ("--extend", "snore=inf", "a number >= 0"),
    ("--low-threshold", "2", "a number in [0, 1]"),
    ("--low-threshold", "snore=-0.1", "a number in [0, 1]"),
    ("--hop-seconds", "0", "a number > 0"),
    ("--hop-seconds", "-1", "a number > 0"),
    ("--hop-seconds", "nan", "a number > 0"),
    ("--hop-seconds", "inf", "a number > 0"),
    ("--chunk-seconds", "0", "a number > 0"),
    ("--chunk-seconds", "nan", "a number > 0"),
    ("--chunk-seconds", "-60", "a number > 0"),
    ("--batch-size", "0", "a whole number >= 1"),
    ("--batch-size", "-1", "a whole number >= 1"),
    ("--batch-size", "1.5", "a whole number >= 1"),
    ("--formats", ",", "must name at least one of csv,raven,audacity,jsonl"),
    ("--formats", "", "must name at least one of"),
    ("--formats", "csv,pdf", "unknown pdf"),
]


def refused(parse, flag, value, what):
    """`parse([flag, value])` raises one line: `FLAG VALUE: ...WHAT..., e.g. ...`."""
    with pytest.raises(UserError) as e:
        parse([f"{flag}={value}"])  # `=`: argparse takes "-1" as a value, not a flag
    text = str(e.value)
    assert "\n" not in text
    shown = value if value else "''"
    assert text.startswith(f"{flag} {shown}: "), text
    assert what in text and ", e.g. " in text, text
    return text


@pytest.mark.parametrize("flag,value,what", BAD_LABEL_VALUES,
                         ids=[f"{f}={v}" for f, v, _ in BAD_LABEL_VALUES])
def test_label_refuses_bad_values_as_it_parses(flag, value, what):
    refused(lambda extra: label_flags.build_arg_parser().parse_known_args(LABEL_ARGS + extra),
            flag, value, what)


def test_label_message_is_the_documented_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    capsys.readouterr()
    rc = cli.main(["label", "--model", str(tmp_path / "no-model"), "--input", str(tmp_path),
                   "--output", str(out), "--threshold", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == "earmark: error: --threshold 2: must be a number in [0, 1], e.g. 0.7 or LABEL=0.7"
    assert not out.exists()


def test_label_parses_good_values_once():
    args, _ = label_flags.build_arg_parser().parse_known_args(LABEL_ARGS + [
        "--threshold", "0.7", "--threshold", "snore=1", "--smoothing", "x=y=3",
        "--min-duration", "0", "--max-gap", "1.5", "--extend", "0.1", "--hop-seconds", "0.24",
        "--chunk-seconds", "30", "--batch-size", "64", "--formats", " csv, jsonl,csv "])
    assert [(o.label, o.value) for o in args.threshold] == [("", 0.7), ("snore", 1.0)]
    assert [(o.label, o.value) for o in args.smoothing] == [("x=y", 3)]
    assert isinstance(args.smoothing[0].value, int) and isinstance(args.threshold[1].value, float)
    assert (args.hop_seconds, args.chunk_seconds, args.batch_size) == (0.24, 30.0, 64)
    assert args.formats == ["csv", "jsonl"]
    defaults, _ = label_flags.build_arg_parser().parse_known_args(LABEL_ARGS)
    assert defaults.formats == ["csv", "raven"] and defaults.threshold == []
    assert (defaults.hop_seconds, defaults.chunk_seconds, defaults.batch_size) == (None, 60.0, None)
    assert defaults.memory_budget == 1_500_000_000  # the batch is chosen from it


def test_label_ranges_are_post_processings():
    """The post-processing flags' ranges are `PostProcessing.RULES`, not a second copy."""
    for attr, (field, example) in label_flags.OVERRIDE_FLAGS.items():
        assert PostProcessing.RULES[field][0](PostProcessing.parse(field, example))
        with pytest.raises(UserError, match=re.escape(PostProcessing.RULES[field][1])):
            label_flags.override(attr)("-1")


def _settings(meta, *flags):
    from earmark.pipelines import label
    args, _ = label_flags.build_arg_parser().parse_known_args(LABEL_ARGS + list(flags))
    _, summary = label.post_processing(meta, args)
    return {l: (e["settings"]["threshold"], e["settings"]["low_threshold"],
                e["from"]["low_threshold"]) for l, e in summary.items()}


def test_low_threshold_flag_is_checked_against_the_threshold_it_goes_with():
    """--low-threshold sets the hysteresis per label; above that label's threshold it is one
    line naming both; a --threshold under the model's low threshold takes it down along."""
    calibrated = {"threshold": 0.6, "smoothing_windows": 1, "min_duration_s": 0.0,
                  "max_gap_s": 0.0, "extend_s": 0.0, "low_threshold": 0.3}
    meta = {"labels": ["cough", "snore"], "background_labels": [], "calibration": {},
            "post_processing": {"cough": calibrated, "snore": dict(calibrated, threshold=0.5,
                                                                   low_threshold=0.5)}}
    assert _settings(meta) == {"cough": (0.6, 0.3, "model"), "snore": (0.5, 0.5, "model")}
    assert _settings(meta, "--low-threshold", "snore=0.2") == {
        "cough": (0.6, 0.3, "model"), "snore": (0.5, 0.2, "flag")}
    assert _settings(meta, "--threshold", "0.25") == {
        "cough": (0.25, 0.25, "flag"), "snore": (0.25, 0.25, "flag")}
    assert _settings(meta, "--threshold", "0.9")["cough"] == (0.9, 0.3, "model")
    with pytest.raises(UserError, match=re.escape(
            "--low-threshold 0.55 for snore: it must be at most snore's threshold (0.5)")):
        _settings(meta, "--low-threshold", "0.55")
    assert _settings(meta, "--low-threshold", "0.55", "--threshold", "snore=0.7")["snore"] == (
        0.7, 0.55, "flag")
    # a label not written (a background label) is not refused for it: no hysteresis there
    background = dict(meta, background_labels=["snore"])
    assert _settings(background, "--low-threshold", "0.55")["snore"] == (0.5, 0.5, "flag")
    with pytest.raises(UserError, match="for snore"):
        _settings(background, "--low-threshold", "0.55", "--emit-background")


BAD_TRAIN_VALUES = [
    ("--epochs", "0", "a whole number >= 1"),
    ("--epochs", "ten", "a whole number >= 1"),
    ("--batch-size", "0", "a whole number >= 1"),
    ("--input-size", "-96", "a whole number >= 1"),
    ("--finetune-epochs", "-1", "a whole number >= 0"),
    ("--finetune-layers", "-2", "a whole number >= 0"),
    ("--patience", "-1", "a whole number >= 0"),
    ("--seed", "-1", "a whole number >= 0"),
    ("--learning-rate", "0", "a number > 0"),
    ("--learning-rate", "nan", "a number > 0"),
    ("--finetune-learning-rate", "-1e-4", "a number > 0"),
    ("--dropout", "1", "a number in [0, 1)"),
    ("--dropout", "-0.1", "a number in [0, 1)"),
]


@pytest.mark.parametrize("flag,value,what", BAD_TRAIN_VALUES,
                         ids=[f"{f}={v}" for f, v, _ in BAD_TRAIN_VALUES])
def test_train_refuses_bad_values_as_it_parses(flag, value, what):
    from earmark.commands import train
    refused(lambda extra: train.build_arg_parser().parse_args(
        ["--data", "d", "--model-dir", "m"] + extra), flag, value, what)


@pytest.mark.parametrize("flag,value,what", [("--patch-hop-seconds", "0", "a number > 0"),
                                             ("--patch-hop-seconds", "nan", "a number > 0"),
                                             ("--num-shards", "-1", "a whole number >= 0"),
                                             ("--num-shards", "2.5", "a whole number >= 0")])
def test_prepare_refuses_bad_values_as_it_parses(flag, value, what):
    refused(lambda extra: prepare_flags.build_arg_parser().parse_known_args(
        ["--input", "in", "--output", "out"] + extra), flag, value, what)


# --- checks against the model, before --output is touched --------------------------------

RATE = 16000


def noise(path, seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(path, (0.05 * rng.normal(size=int(seconds * RATE))).astype(np.float32), RATE)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("flag_ranges_corpus")
    noise(str(root / "a.wav"))
    return str(root)


def broken_models(tiny_model, root):
    """{name: a broken copy of the tiny model dir (or a missing one)}."""
    def copy(name, edit):
        d = os.path.join(root, name)
        shutil.copytree(tiny_model, d)
        edit(d)
        return d

    def write(d, name, data):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    def wrong_format(d):
        with open(os.path.join(d, "model.json")) as f:
            meta = json.load(f)
        write(d, "model.json", json.dumps({**meta, "format_version": 99}).encode())
    return {"missing": os.path.join(root, "nowhere"),
            "model_json_unreadable": copy("unreadable", lambda d: write(d, "model.json", b"{not json")),
            "model_json_wrong_format": copy("wrong_format", wrong_format),
            "model_file_corrupt": copy("corrupt", lambda d: write(d, "model.keras", b"PK no"))}


def earlier_output(path):
    """An output folder as an earlier earmark run left it: --overwrite would clear it."""
    os.makedirs(path)
    with open(os.path.join(path, "segments.csv"), "w") as f:
        f.write("file,start_s,end_s,label,confidence,model_id\n")
    with open(os.path.join(path, "earmark_outputs.json"), "w") as f:
        json.dump({"command": "label", "run_id": "earlier", "incremental": False,
                   "complete": True, "files": ["earmark_outputs.json", "segments.csv"],
                   "folders": []}, f)
    return path


@pytest.mark.slow
def test_model_checks_leave_the_output_as_it_was(tiny_model, corpus, tmp_path):
    """A broken model, a LABEL= the model lacks, a hop its windows cannot move by: refused
    before --output is created or claimed, even with --overwrite."""
    from earmark.pipelines import label
    cases = [(model, [], f"--model {model}: ")
             for model in broken_models(tiny_model, str(tmp_path)).values()]
    cases += [(tiny_model, ["--threshold", "cough=0.5"], "'cough' is not a label of this model"),
              (tiny_model, ["--smoothing", "class_0=3", "--extend", "nope=1"], "--extend nope=1"),
              (tiny_model, ["--hop-seconds", "0.015"], "a multiple of 0.01 s"),
              (tiny_model, ["--hop-seconds", "0.001"], "from 0.01 s up to 0.975 s"),
              (tiny_model, ["--hop-seconds", "5"], "up to 0.975 s")]
    kept = earlier_output(str(tmp_path / "earlier"))
    before = files_under(kept)
    for i, (model, extra, says) in enumerate(cases):
        for out, overwrite in ((str(tmp_path / f"absent{i}"), []), (kept, ["--overwrite"])):
            with pytest.raises(UserError) as e:
                label.run(["--model", model, "--input", corpus, "--output", out, *extra,
                           *overwrite])
            assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
        assert not os.path.exists(str(tmp_path / f"absent{i}")), (model, extra)
        assert files_under(kept) == before, (model, extra)


@pytest.mark.slow
def test_an_incremental_run_whose_one_new_file_fails_says_so(tiny_model, tmp_path, capsys):
    """Only the new file of an incremental run is broken: the error counts this run's
    files (one), not the folder's, and names the run's own dead letter, which is there."""
    from earmark.pipelines import label
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    noise(str(src / "a.wav"))
    noise(str(src / "b.wav"), seed=1)
    argv = ["--model", tiny_model, "--input", str(src), "--output", str(out), "--incremental",
            "--formats", "csv"]
    assert label.main(argv)["files_labeled"] == 2
    (src / "broken.wav").write_bytes(b"RIFF not really audio")
    capsys.readouterr()
    with pytest.raises(UserError) as e:
        label.main(argv)
    assert "files: 3 matched, 1 new or changed, 0 labeled, 1 failed" in capsys.readouterr().out
    message = str(e.value)
    assert message.startswith("the one new or changed file failed; see "), message
    dead = message.split("; see ", 1)[1]
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert dead == str(out / "runs" / run_id / "dead_letter.jsonl")
    assert [json.loads(l)["file"] for l in open(dead)] == ["broken.wav"]


@pytest.mark.slow
def test_a_run_whose_files_all_fail_names_its_dead_letter(tiny_model, tmp_path):
    from earmark.pipelines import label
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("x.wav", "y.wav"):
        (src / name).write_bytes(b"RIFF not really audio")
    with pytest.raises(UserError) as e:
        label.main(["--model", tiny_model, "--input", str(src), "--output", str(out),
                    "--formats", "csv"])
    assert str(e.value) == f"all 2 files failed; see {out / 'dead_letter.jsonl'}"
    assert (out / "dead_letter.jsonl").exists()
