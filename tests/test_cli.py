"""The `earmark` command as a user meets it: help, one-line errors, the demo corpus."""
import os
import subprocess
import sys

import pytest

from earmark import demo


def earmark(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "earmark", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_help_lists_commands_and_subcommand_help_has_examples():
    top = earmark("--help")
    assert top.returncode == 0 and "prepare" in top.stdout and "demo" in top.stdout
    sub = earmark("prepare", "--help")
    assert sub.returncode == 0 and "examples:" in sub.stdout and "--manifest" in sub.stdout


@pytest.mark.parametrize("args,message", [
    (["--input", "/definitely/not/here"], "does not exist"),
    (["--manifest", "/definitely/not/here.csv"], "cannot be read"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    r = earmark("prepare", *args, "--output", str(tmp_path / "out"))
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("earmark: error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in r.stderr


def test_command_exit_skips_teardown_but_runs_exit_handlers_and_keeps_the_code(tmp_path):
    """`main_then_exit` (the installed command, `python -m earmark`) ends the process with
    os._exit: exit handlers (temporary folders, logging) must still run, output must be
    flushed, and the exit code must be the command's."""
    marker = tmp_path / "handler_ran"
    script = ("import atexit, sys; from earmark import cli; "
              f"atexit.register(lambda: open({str(marker)!r}, 'w').close()); "
              "sys.argv = ['earmark'] + sys.argv[1:]; print('before', end=''); "
              "cli.main_then_exit()")
    for args, code in ((["--help"], 0), (["prepare", "--input", "/definitely/not/here",
                                          "--output", str(tmp_path / "out")], 2)):
        marker.unlink(missing_ok=True)
        r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == code and r.stdout.startswith("before")
        assert marker.exists()


def test_verbose_shows_the_traceback(tmp_path):
    r = earmark("prepare", "--input", "/definitely/not/here", "--output", str(tmp_path), "--verbose")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_demo_corpus_is_deterministic(tmp_path):
    a = demo.make_corpus(str(tmp_path / "a"), clips_per_label=3, seed=7)
    b = demo.make_corpus(str(tmp_path / "b"), clips_per_label=3, seed=7)
    names = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    assert len(names) == 3 * len(demo.LABELS)
    for name in names:
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read()


def test_unknown_flag_and_missing_value_are_one_line_errors(capsys):
    from earmark import cli
    for argv, message in ((["train", "--data", "d", "--model-dir", "m", "--bogus"],
                           "earmark train: unrecognized arguments: --bogus "
                           "(see 'earmark train --help')"),
                          (["evaluate", "--model"], "earmark evaluate: argument --model: "
                                                    "expected one argument"),
                          (["lable"], "invalid choice: 'lable'")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("earmark: error: ") and "\n" not in err and message in err, err


def test_help_builds_only_the_invoked_commands_parser():
    """`earmark --help`, `earmark evaluate|label|prepare|train|embed|search --help` load neither
    TensorFlow nor Beam (issue 14: `earmark label --help` under a second)."""
    code = ("import sys, contextlib, io\nfrom earmark import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        assert cli.main(ARGV) == 0\n"
            "    except SystemExit as e:\n"     # argparse's --help exits 0
            "        assert not e.code\n"
            "assert 'usage: ' in out.getvalue(), out.getvalue()\n"
            "print(sorted({'tensorflow', 'apache_beam'} & set(sys.modules)))\n")
    for argv in (["--help"], ["evaluate", "--help"], ["label", "--help"],
                 ["prepare", "--input", "x", "--help"], ["train", "--help"], ["embed", "--help"],
                 ["search", "--help"]):
        r = subprocess.run([sys.executable, "-c", code.replace("ARGV", repr(argv))],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", r.stderr[-2000:]


@pytest.mark.slow
def test_quiet_by_default_in_beam_worker_processes_too(tmp_path):
    """`earmark prepare` with Beam's worker processes prints earmark's lines only; the
    library notices those workers print on import (google-api-core's FutureWarnings,
    TensorFlow's C++ start-up lines) show with --verbose."""
    from tests.audio_fixtures import tone, write
    for label in ("a", "b"):
        (tmp_path / "in" / label).mkdir(parents=True)
        write(tmp_path / "in" / label / "clip.wav", tone(1.0, 16000), 16000)
    workers = ["--direct_running_mode", "multi_processing", "--direct_num_workers", "1"]
    # as a user's shell starts it: not with the settings an in-process `cli.main` of an
    # earlier test left in this process' environment
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL")}
    quiet = earmark("prepare", "--input", str(tmp_path / "in"), "--output",
                    str(tmp_path / "quiet"), *workers, cwd=tmp_path, env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    noise = [l for l in quiet.stderr.splitlines()
             if "Warning" in l or "warnings.warn" in l or " E external" in l]
    assert noise == []
    loud = earmark("prepare", "--input", str(tmp_path / "in"), "--output",
                   str(tmp_path / "loud"), *workers, "--verbose", cwd=tmp_path, env=env)
    assert loud.returncode == 0 and "FutureWarning" in loud.stderr
