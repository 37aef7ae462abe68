"""`model.ensemble`: which bases can form an ensemble, the in-graph decimation its members
share, and the `--base A+B` flag (end to end: test_embedding_train)."""
import keras
import numpy as np
import pytest

from earmark.commands import train
from earmark.model import audio_bases, ensemble
from earmark.model.errors import UserError
from earmark.pipelines import prepare


def test_an_ensemble_takes_its_members_common_window_at_the_highest_rate():
    spec = audio_bases.get_spec("birdnet+musicnn")
    assert spec.name == "birdnet+musicnn_msd"              # aliases resolved, order kept
    assert (spec.sample_rate_hz, spec.window_samples, spec.embedding_dim) == (48000, 144000, 1777)
    assert not spec.commercial_use and "CC BY-NC-SA" in spec.licence
    config = prepare.feature_config_for("birdnet+musicnn")
    assert (config.sample_rate_hz, config.patch_samples, config.patch_hop_seconds) == \
        (48000, 144000, 1.5)
    # BirdNET alone windows the same way: one prepared set serves both
    assert config.hash() == prepare.feature_config_for("birdnet").hash()
    both = audio_bases.get_spec("musicnn_msd+musicnn_mtt")
    assert both.sample_rate_hz == 16000 and both.commercial_use


@pytest.mark.parametrize("name, message", [
    ("vgg16+musicnn", "vgg16 is not one"),
    ("musicnn+musicnn_msd", "two or more different bases"),
    ("musicnn+", "two or more different bases"),
])
def test_bases_that_cannot_form_an_ensemble_are_refused_in_one_line(name, message):
    with pytest.raises(ValueError, match=message):
        audio_bases.get_spec(name)
    with pytest.raises(UserError, match=message) as error:
        train.build_arg_parser().parse_args(["--data", "d", "--model-dir", "m", "--base", name])
    assert "\n" not in str(error.value)


def test_train_flag_accepts_ensembles_and_single_bases():
    parse = lambda base: train.build_arg_parser().parse_args(  # noqa: E731
        ["--data", "d", "--model-dir", "m", "--base", base]).base
    assert parse("birdnet+musicnn") == "birdnet+musicnn_msd"
    assert parse("musicnn") == "musicnn_msd" and parse("vgg16") == "vgg16"
    with pytest.raises(UserError, match="invalid choice"):
        parse("resnet9")


def _tone(hz, seconds=1.0, rate=48000):
    return np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate).astype(np.float32)


def test_decimation_keeps_the_band_below_the_new_nyquist_and_removes_what_would_alias():
    layer = ensemble.Decimate(3)
    for hz, low, high in ((1000, 0.99, 1.01), (6000, 0.99, 1.01), (12000, 0.0, 1e-3)):
        out = np.asarray(layer(_tone(hz)[None]))[0]
        assert out.shape == (16000,)
        amplitude = np.sqrt(2 * np.mean(out[200:-200] ** 2))   # away from the zero padding
        assert low <= amplitude <= high, (hz, amplitude)
    # sample i of the output sits on input sample 3·i (+1): a 1-kHz tone keeps its phase
    out = np.asarray(layer(_tone(1000)[None]))[0]
    expected = np.sin(2 * np.pi * 1000 * (3 * np.arange(16000) + 1) / 48000)
    assert np.abs(out[200:-200] - expected[200:-200]).max() < 0.01


def test_decimation_layer_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((4800,))
    model = keras.Model(inputs, ensemble.Decimate(3, name="decimate")(inputs))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(0).normal(size=(2, 4800)).astype(np.float32)
    assert np.array_equal(np.asarray(model(x)), np.asarray(again(x)))
    assert again.output_shape == (None, 1600)
