"""Each name of a file earmark writes or reads is defined in one module; every other
module imports it. Scans the source (AST string constants) of earmark/, model/ and
pipelines/: a name spelled out as a whole string in two modules is two definitions that
can drift apart (as report's "model.json" once named what model_files calls META_FILE)."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("earmark", "model", "pipelines")

# file name → the one module that spells it (relative path)
HOMES = {
    # a trained model dir
    "model.keras": "model/model_files.py",
    "head.keras": "model/model_files.py",
    "model.json": "model/model_files.py",
    "history.json": "model/model_files.py",
    "evaluation.json": "model/model_files.py",
    "event_evaluation.json": "model/model_files.py",
    # a prepared-data folder (`earmark prepare`)
    "features.json": "model/data_files.py",
    "stats.json": "model/data_files.py",
    "recordings.jsonl": "model/data_files.py",
    ".tfrecord.gz": "model/data_files.py",
    "dead_letter.jsonl": "model/data_files.py",  # prepare's and label's alike
    # a label output (`earmark label`)
    "run.json": "pipelines/label_formats.py",
    "segments.csv": "pipelines/label_formats.py",
    "segments.jsonl": "pipelines/label_formats.py",
    "ledger.json": "pipelines/ledger.py",
    # every output folder
    "sources.csv": "pipelines/outputs.py",
    "earmark_outputs.json": "pipelines/outputs.py",
}
SPLITS = ("train", "validation", "test")
SPLITS_HOME = "model/data_files.py"


def _sources():
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    yield os.path.relpath(path, ROOT).replace(os.sep, "/"), path


def _docstrings(tree) -> set:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def constants(tree):
    """(string constants, tuples of string constants) of a module: whole literals in code,
    not docstrings and not the text pieces of f-strings (messages that name a file)."""
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    strings, tuples = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            strings.append(node.value)
        elif isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            tuples.append(tuple(e.value for e in node.elts))
    return strings, tuples


def definitions(sources) -> tuple:
    """({file name: modules spelling it}, [modules spelling the split names])."""
    where, splits = {name: [] for name in HOMES}, []
    for rel, path in sources:
        with open(path, encoding="utf-8") as f:
            strings, tuples = constants(ast.parse(f.read(), rel))
        for name in HOMES:
            if name in strings:
                where[name].append(rel)
        if SPLITS in tuples:
            splits.append(rel)
    return where, splits


def test_each_file_name_is_spelled_in_its_one_module():
    where, splits = definitions(_sources())
    wrong = {name: modules for name, modules in where.items() if modules != [HOMES[name]]}
    assert not wrong, ("file names spelled outside their one module (import it from "
                       f"there instead): {wrong}")
    assert splits == [SPLITS_HOME], splits


def test_the_check_catches_a_second_definition(tmp_path):
    """The scan sees an assigned constant and a literal in a call, and skips messages and
    docstrings."""
    for name, text in {"a.py": 'SEGMENTS = "segments.csv"\n',
                       "b.py": 'import os\nos.path.join("x", "segments.csv")\n'
                               'SPLITS = ("train", "validation", "test")\n',
                       "c.py": '"""writes segments.csv"""\nx = f"no segments.csv in {1}"\n'}.items():
        (tmp_path / name).write_text(text)
    where, splits = definitions((n, str(tmp_path / n)) for n in ("a.py", "b.py", "c.py"))
    assert where["segments.csv"] == ["a.py", "b.py"] and splits == ["b.py"]


@pytest.mark.parametrize("name", sorted(HOMES))
def test_each_home_defines_its_names(name):
    with open(os.path.join(ROOT, HOMES[name]), encoding="utf-8") as f:
        assert name in constants(ast.parse(f.read()))[0]
