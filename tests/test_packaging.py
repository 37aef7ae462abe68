"""Packaging: `install_requires` is exactly what the product imports, the runtime lock holds
no development package, and the built wheel installs under the one name `earmark`."""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCT_FOLDERS = ("earmark", "model", "pipelines")   # install as earmark, earmark.model, earmark.pipelines
# Declared but never imported, each for a stated reason (setup.py says the same).
CONSTRAINTS = {
    "protobuf": "Beam 2.72 beside TensorFlow 2.17 needs protobuf < 5",
    "setuptools": "TensorBoard imports pkg_resources, which setuptools 81 removed",
    "crcmod": "quiets Beam tfrecordio's slow-CRC warning",
}
DEV_ONLY = {"pytest", "selenium", "librosa", "gcp-storage-emulator", "python-hcl2", "tf-keras"}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it, without extras or version."""
    name = re.split(r"[\[<>=!~;\s]", name.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def product_imports() -> set:
    """Dotted names of every absolute import in the product's modules (lazy ones included)."""
    names = set()
    for folder in PRODUCT_FOLDERS:
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        names.update(a.name for a in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] not in sys.stdlib_module_names
            and n.split(".")[0] != "earmark"}


def distribution_of(dotted: str) -> str:
    """The installed distribution that provides the module `dotted` (namespace packages
    such as `google` are shared by many: the one holding the module's own folder wins)."""
    top = dotted.split(".")[0]
    candidates = importlib.metadata.packages_distributions().get(top, [])
    if len(set(candidates)) == 1:
        return normalize(candidates[0])
    parts = dotted.split(".")
    for depth in range(len(parts), 1, -1):
        prefix = "/".join(parts[:depth])
        owners = {normalize(d) for d in candidates
                  if any(str(f).startswith(prefix + "/") or str(f) == prefix + ".py"
                         for f in importlib.metadata.distribution(d).files or ())}
        if len(owners) == 1:
            return owners.pop()
    raise AssertionError(f"cannot tell which installed distribution provides {dotted}: {candidates}")


def setup_install_requires() -> list:
    with open(os.path.join(ROOT, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return [ast.literal_eval(e) for e in node.value.elts]
    raise AssertionError("setup.py has no install_requires")


def requirement_lines(name: str) -> list:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith(("#", "-"))]


def locked(name: str) -> set:
    return {normalize(l) for l in requirement_lines(name)}


def test_install_requires_is_exactly_what_the_product_imports():
    declared = {normalize(r) for r in setup_install_requires()}
    imported = {distribution_of(n) for n in product_imports()}
    assert imported - declared == set(), "imported but not in install_requires"
    assert declared - imported - set(CONSTRAINTS) == set(), "in install_requires but never imported"
    assert set(CONSTRAINTS) <= declared


def test_requirements_in_declares_what_setup_py_declares():
    assert sorted(requirement_lines("requirements.in")) == sorted(setup_install_requires())


def test_runtime_lock_holds_no_development_package():
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    assert runtime & DEV_ONLY == set()
    assert {normalize(r) for r in setup_install_requires()} <= runtime
    assert runtime <= dev, "the development lock must pin the runtime set too"
    assert DEV_ONLY <= dev
    assert "tensorflow-hub" not in dev, "unused: the product and the tests never import it"


def test_wheel_installs_only_the_name_earmark(tmp_path):
    """Build the wheel from a copy of the sources (the repository stays untouched) and list
    its top-level names: `earmark` and its metadata, no `model` or `pipelines`."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "README.md"):
        (src / name).write_bytes(open(os.path.join(ROOT, name), "rb").read())
    for folder in PRODUCT_FOLDERS:
        os.symlink(os.path.join(ROOT, folder), src / folder)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"),
                          str(src)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").iterdir()
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"earmark", "earmark-0.1.0.dist-info"}
    for module in ("earmark/cli.py", "earmark/commands/train.py", "earmark/model/train.py",
                   "earmark/model/export.py",
                   "earmark/pipelines/label.py", "earmark/pipelines/prepare.py"):
        assert module in names


def test_readme_test_command_is_the_one_ci_runs():
    """CI runs the README's test command: the two stay one command."""
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [line.strip() for line in f if line.lstrip().startswith(".venv/bin/python -m pytest")]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert len(ci) == 1 and ci[0] in readme
