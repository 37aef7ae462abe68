import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
