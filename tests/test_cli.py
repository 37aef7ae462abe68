"""The `earmark` command as a user meets it: help, one-line errors, the demo corpus."""
import os
import subprocess
import sys

import pytest

from earmark import demo


def earmark(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "earmark", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


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
