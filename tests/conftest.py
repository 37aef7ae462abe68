import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Longest first: test files that take several minutes on one worker start before the rest
# (with `-n 2 --dist loadfile --no-loadscope-reorder`, files go to workers in this order);
# the others keep xdist's default order, most tests first.
LONGEST_FILES = ("test_detection.py", "test_embedding_train.py", "test_label.py")


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


@pytest.fixture(scope="session")
def snore_vgg16(tmp_path_factory):
    """A VGG16 model (stand-in weights, frozen, the dropout head: what the default `--head auto`
    keeps on these clips (docs/train.md), trained alone to save the second calibration;
    with the 8-bit file train ships by default)
    of 7/8 of the shared snore clips, prepared (80/10/10 by prepare's stable hash) and
    trained, built once per run for every worker; the other 1/8 is never trained on. test_train_snore scores it on its test
    split, test_label labels nights made of the held-out eighth.
    → {"prepared", "model", "held_out" (a make_night clip folder)}."""
    from tests import nights
    from tests.fixtures import built_once
    from tests.shared import shared_path
    weights = shared_path("models", "vgg16_hed_notop.weights.h5")

    def build(root):
        from earmark import cli
        root.mkdir()
        clips = nights.split_snoring_clips(str(root))
        assert cli.main(["prepare", "--manifest", clips["train_csv"], "--output",
                         str(root / "prepared")]) == 0
        assert cli.main(["train", "--data", str(root / "prepared"), "--model-dir",
                         str(root / "model"), "--base", "vgg16", "--weights", weights,
                         "--cache-dir", str(root / "cache"), "--head", "dropout",
                         "--quiet"]) == 0

    root = built_once(tmp_path_factory, "snore_vgg16", build)
    return {"prepared": str(root / "prepared"), "model": str(root / "model"),
            "held_out": str(root / "held_out")}
