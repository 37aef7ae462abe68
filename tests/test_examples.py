"""`model.examples`: the prepared-patch Example schema. `make_example` writes float features
from their packed wire form; the bytes must be those protocol buffers write value by value
(prepared data stays byte-identical across versions, and a resumed run matches)."""
import numpy as np
import tensorflow as tf

from earmark.model import examples
from earmark.model.features import FeatureConfig


def _element_wise(values) -> bytes:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values)).SerializeToString()


def test_float_features_are_the_bytes_protobuf_writes_value_by_value():
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=144000).astype(np.float32),             # a 3-s window at 48 kHz
             rng.normal(size=(96, 64)).astype(np.float32).reshape(-1),   # a log-mel patch
             np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, 3.4e38], np.float32),
             np.array([0.1, 1 / 3, 2.675], np.float64),                  # rounded to float32
             [12.48], [], np.zeros(17, np.float32)]                      # 17 x 4 bytes: varint
    for values in cases:
        assert examples._floats(values).SerializeToString() == _element_wise(values)


def test_varint_is_the_length_prefix_protobuf_writes():
    for n in (0, 1, 127, 128, 300, 16383, 16384, 576000, 2_000_000):
        field = tf.train.BytesList(value=[b"x" * n]).SerializeToString()   # tag, length, data
        assert examples._varint(n) == field[1:len(field) - n]


def test_an_example_reads_back_what_was_written():
    config = FeatureConfig()
    patch = np.random.default_rng(1).normal(size=config.patch_shape).astype(np.float32)
    serialized = examples.make_example(patch, [1, 0], ["snore", "not_snore"], "ronflé 1.flac",
                                       "ronflé 1.flac", 1.5, 2.46, False, "abc")
    parsed = examples.parse_example(serialized, config)
    np.testing.assert_array_equal(parsed["log_mel"].numpy(), patch)
    assert parsed["start_s"].numpy() == np.float32(1.5)
    assert parsed["end_s"].numpy() == np.float32(2.46)
    assert list(parsed["labels"].numpy()) == [1, 0]
