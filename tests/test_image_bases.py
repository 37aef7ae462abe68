"""The base registry: every base builds with one code path, cuts into blocks, loads weights."""
import os
import urllib.request

import keras
import numpy as np
import pytest

from earmark.model import image_bases
from earmark.model.errors import UserError

SMALL_PX = {"inception_v3": 75, "mobilenet_v2": 32, "efficientnet_b0": 32, "resnet50": 32,
            "vgg16": 32}


@pytest.mark.parametrize("name", sorted(image_bases.BASES))
def test_every_base_builds_pools_and_unfreezes_top_blocks(name):
    px = SMALL_PX[name]
    base = image_bases.build_base(name, px, image_bases.WeightsInfo("none"))
    out = base(np.zeros((2, px, px, 3), np.float32))
    assert out.shape[0] == 2 and out.shape[1] == base.output_shape[-1]
    last = image_bases.build_base(name, px, image_bases.WeightsInfo("none"), pooling="last")
    assert last.output_shape[-1] < base.output_shape[-1]   # multiscale adds mid-level taps
    groups = image_bases.blocks(base, name)
    assert len(groups) >= 5
    assert sum(len(g) for g in groups) == len(base.layers)
    n = image_bases.unfreeze_top_blocks(base, name, 2)
    trainable = {l.name for l in base.layers if l.trainable and l.weights}
    top = {l.name for g in groups[-2:] for l in g
           if l.weights and not isinstance(l, keras.layers.BatchNormalization)}
    assert n > 0 and trainable == top
    assert not any(l.trainable for l in base.layers
                   if isinstance(l, keras.layers.BatchNormalization))
    assert image_bases.unfreeze_top_blocks(base, name, 0) == 0
    assert not base.trainable_weights


def test_seeded_random_init_is_reproducible():
    a = image_bases.build_base("mobilenet_v2", 32, image_bases.WeightsInfo("none"), seed=3)
    b = image_bases.build_base("mobilenet_v2", 32, image_bases.WeightsInfo("none"), seed=3)
    assert image_bases.weights_fingerprint(a) == image_bases.weights_fingerprint(b)


def test_weights_file_path_loads_and_is_checksummed(tmp_path):
    src = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg.weights.h5")
    src.save_weights(path)
    info = image_bases.resolve_weights(path)
    assert info.file_sha256 == image_bases.sha256_file(path) and not info.is_random
    base = image_bases.build_base("vgg16", 32, info)
    np.testing.assert_array_equal(base.get_layer("block1_conv1").get_weights()[0],
                                  src.get_layer("block1_conv1").get_weights()[0])


def test_wrong_weights_file_and_missing_path_are_one_line_errors(tmp_path):
    src = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = str(tmp_path / "mnv2.weights.h5")
    src.save_weights(path)
    with pytest.raises(UserError, match="does not fit vgg16"):
        image_bases.build_base("vgg16", 32, image_bases.resolve_weights(path))
    with pytest.raises(UserError, match="no such file"):
        image_bases.resolve_weights(str(tmp_path / "absent.h5"))
    with pytest.raises(UserError, match="at least 75"):
        image_bases.build_base("inception_v3", 64, image_bases.WeightsInfo("none"))


def test_imagenet_download_failure_says_how_to_pass_a_local_file(tmp_path, monkeypatch):
    # a real download attempt through an unreachable proxy, into an empty Keras cache
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    try:
        with pytest.raises(UserError, match="--weights PATH") as e:
            image_bases.build_base("mobilenet_v2", 96, image_bases.WeightsInfo("imagenet"))
    finally:  # urlretrieve caches an opener built from the proxy variables: drop it
        urllib.request.install_opener(None)
    assert "\n" not in str(e.value)


def test_gcs_weights_are_copied_to_the_local_cache(tmp_path, gcs_emulator):
    src = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    local = str(tmp_path / "vgg.weights.h5")
    src.save_weights(local)
    client = gcs_emulator.client()
    bucket = client.create_bucket("earmark-weights")
    bucket.blob("w/vgg.weights.h5").upload_from_filename(local)
    info = image_bases.resolve_weights("gs://earmark-weights/w/vgg.weights.h5",
                                       str(tmp_path / "cache"))
    assert info.local_path.startswith(str(tmp_path / "cache"))
    assert info.file_sha256 == image_bases.sha256_file(local)
    assert os.path.basename(info.local_path) == "vgg.weights.h5"
    image_bases.build_base("vgg16", 32, info)
