"""The bottleneck cache computed by the Beam pipeline equals the in-process one, and train
reuses it."""
import os

import numpy as np
import pytest

from earmark.commands import train
from earmark.model import bottleneck, data
from earmark.model.adapter import InputStats
from tests.fixtures import make_prepared, train_args

pytestmark = pytest.mark.slow  # Beam pipelines end to end: the full suite, not the quick loop


def test_beam_bottlenecks_equal_local_ones_and_train_reuses_them(tmp_path, capsys):
    from earmark.pipelines import bottleneck_pipeline as beam_bottleneck
    prepared_dir = make_prepared(str(tmp_path / "p"), patches_per_recording=2)
    out_dir = beam_bottleneck.main(["--data", prepared_dir, "--base", "mobilenet_v2",
                                    "--weights", "none", "--input-size", "32",
                                    "--cache-dir", str(tmp_path / "cache")])
    assert bottleneck.is_complete(out_dir)
    prepared = data.open_prepared(prepared_dir)
    train_split = data.read_split(prepared, "train")
    stats = InputStats.from_array(train_split.log_mel)
    spec = bottleneck.EmbedderSpec("mobilenet_v2", "none", 32, stats.mean, stats.std, 96, 64)
    embedder, _ = bottleneck.build_embedder(spec)
    local = bottleneck.embed(embedder, train_split.log_mel)
    feats, labels, keys = bottleneck.read_split(out_dir, "train")
    assert feats.shape == local.shape
    # Beam writes in its own order: match rows by (recording, features) content
    order_beam = np.lexsort((feats[:, 0], keys))
    order_local = np.lexsort((local[:, 0], train_split.recording_key))
    np.testing.assert_allclose(feats[order_beam], local[order_local], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(labels[order_beam], train_split.label[order_local])
    capsys.readouterr()
    args = train_args(prepared_dir, tmp_path / "m", tmp_path / "cache", "--strategy", "frozen",
                      "--epochs", "3")
    train.main([a for a in args if a != "--quiet"])   # not quiet: the cache log is printed
    assert f"bottleneck cache hit: {out_dir}" in capsys.readouterr().out
    assert os.listdir(tmp_path / "cache" / "bottlenecks") == [os.path.basename(out_dir)]


def test_embed_gives_keras_predict_bit_for_bit_in_one_graph(tmp_path):
    """`bottleneck.embed` (one graph for every batch shape) computes what Keras' predict does
    at the same batch size, and traces once for splits of different lengths."""
    spec = bottleneck.EmbedderSpec("mobilenet_v2", "none", 32, -3.0, 2.0, 96, 64)
    embedder, _ = bottleneck.build_embedder(spec)
    patches = np.random.default_rng(0).normal(-3, 2, (150, 96, 64)).astype(np.float32)
    np.testing.assert_array_equal(bottleneck.embed(embedder, patches),
                                  embedder.predict(patches, batch_size=64, verbose=0))
    bottleneck.embed(embedder, patches[:37])
    assert bottleneck.inference_fn(embedder).experimental_get_tracing_count() == 1
