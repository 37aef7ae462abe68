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
