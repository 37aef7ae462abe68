"""The layering rule, read off the source: model/ knows neither Beam, nor argparse, nor the
pipelines or the CLI that wire it; pipelines/ may import model/, never the reverse."""
import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPO, "model")
FORBIDDEN_IN_MODEL = ("argparse", "apache_beam", "earmark.pipelines", "earmark.commands",
                      "earmark.cli")


def modules(folder):
    return sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names
                  if n.endswith(".py"))


def imported_names(tree) -> list:
    """(line, dotted name) of every import, at any depth (lazy imports in functions too);
    `from earmark import pipelines` counts as `earmark.pipelines`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, node.args[0].value))
    return found


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_MODEL)


@pytest.mark.parametrize("path", modules(MODEL), ids=lambda p: os.path.relpath(p, REPO))
def test_model_imports_no_argparse_beam_pipelines_or_cli(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    bad = [f"line {line}: {name}" for line, name in imported_names(tree) if forbidden(name)]
    assert not bad, f"{os.path.relpath(path, REPO)} imports {bad}"


@pytest.mark.parametrize("name", ["train.py", "evaluate.py"])
def test_training_and_evaluation_never_print(name):
    """What they say goes through the callables (or logger) the caller hands them."""
    path = os.path.join(MODEL, name)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    prints = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name) and n.func.id == "print"]
    assert not prints, f"model/{name} prints on lines {prints}"


def test_the_checker_sees_lazy_and_from_imports():
    tree = ast.parse("def f():\n    from earmark import pipelines\n    import argparse as a\n"
                     "from earmark.pipelines.fs import read_bytes\n")
    assert sorted(n for _, n in imported_names(tree) if forbidden(n)) == [
        "argparse", "earmark.pipelines", "earmark.pipelines.fs", "earmark.pipelines.fs.read_bytes"]
