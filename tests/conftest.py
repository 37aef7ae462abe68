import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Longest first: test files that take several minutes on one worker start before the rest
# (with `-n 2 --dist loadfile --no-loadscope-reorder`, files go to workers in this order);
# the others keep xdist's default order, most tests first.
LONGEST_FILES = ("test_heads_and_ensembles.py",)


def pytest_collection_modifyitems(config, items):
    counts = {}
    for item in items:
        counts[item.path.name] = counts.get(item.path.name, 0) + 1
    items.sort(key=lambda item: (item.path.name not in LONGEST_FILES,
                                 -counts[item.path.name], item.path.name))


@pytest.fixture(scope="session")
def gcs_emulator():
    """An in-memory GCS emulator on 127.0.0.1; STORAGE_EMULATOR_HOST points at it while
    the session lasts. `gcs_emulator.client()` is an anonymous google-cloud-storage client."""
    from tests.gcs_emulator import GcsEmulator, find_executable
    if not find_executable():
        pytest.skip("gcp-storage-emulator is not installed (it comes with the test extras)")
    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny model trained in seconds on synthetic prepared data (no shared data needed):
    for tests of what commands do with files, not of what a model finds."""
    from earmark.commands import train
    from tests.fixtures import make_prepared, train_args
    root = tmp_path_factory.mktemp("tiny_model")
    prepared = make_prepared(str(root / "prepared"))
    train.main(train_args(prepared, root / "model", root / "cache", "--epochs", "4"))
    return str(root / "model")
