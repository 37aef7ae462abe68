"""The Keras 3 musicnn port against the original TF1 graph, and its checkpoint guards."""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from earmark.model import musicnn
from tests.shared import SHARED

ESC10_CLIP = os.path.join(SHARED, "data", "esc10", "dog_bark", "1-30226-A.ogg")

HAVE_MUSICNN = importlib.util.find_spec("musicnn") is not None
needs_musicnn = pytest.mark.skipif(
    not HAVE_MUSICNN, reason="the musicnn wheel (its checkpoints) is not installed: "
                             "pip install --no-deps musicnn==0.1.0")


def synthetic_windows(n=3, seed=0):
    """[n, 48000] 16-kHz test audio with broad, varied spectra and loudness: a chirp, noise
    bursts, clicks and harmonic tones; window i is scaled by 10^-i (down to -40 dB)."""
    rng = np.random.default_rng(seed)
    t = np.arange(musicnn.WINDOW_SAMPLES) / musicnn.SAMPLE_RATE_HZ
    out = []
    for i in range(n):
        f0 = rng.uniform(80, 400)
        x = 0.3 * np.sin(2 * np.pi * (f0 * t + rng.uniform(200, 1500) * t ** 2))
        x += sum(0.1 / k * np.sin(2 * np.pi * k * rng.uniform(100, 600) * t) for k in range(1, 6))
        burst = (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0.6)
        x += 0.2 * burst * rng.standard_normal(t.shape)
        x[rng.integers(0, len(t), 20)] += 0.8
        out.append((x / np.abs(x).max() * 0.9 * 10.0 ** -i).astype(np.float32))
    return np.stack(out)


# Runs musicnn's own code: its librosa frontend (`extractor.batch_data`) and its TF1 graph
# (`models.define_model`), with legacy Keras. The restore is NOT wrapped in try/except (as
# musicnn's extractor does), and every graph variable is then compared with the checkpoint.
REFERENCE = textwrap.dedent(r'''
    import json, os, sys, tempfile
    import numpy as np, soundfile as sf, tensorflow as tf, librosa
    from musicnn import extractor, models, configuration as config
    wav_path, out_dir = sys.argv[1], sys.argv[2]
    waves = np.load(wav_path)
    n_frames = librosa.time_to_frames(3, sr=config.SR, n_fft=config.FFT_SIZE,
                                      hop_length=config.FFT_HOP) + 1
    logmel = []
    with tempfile.TemporaryDirectory() as d:
        for i, w in enumerate(waves):
            p = os.path.join(d, f"{i}.wav")
            sf.write(p, w, config.SR, subtype="FLOAT")
            logmel.append(extractor.batch_data(p, n_frames, n_frames)[0][0])
    logmel = np.stack(logmel).astype(np.float32)
    report = {"n_frames": int(n_frames)}
    for model in ("MSD_musicnn", "MTT_musicnn"):
        tf.compat.v1.reset_default_graph()
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
            is_training = tf.compat.v1.placeholder(tf.bool)
            outputs = models.define_model(x, is_training, model, 50)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = os.path.join(os.path.dirname(extractor.__file__), model) + "/"
            tf.compat.v1.train.Saver().restore(sess, prefix)
            reader = tf.compat.v1.train.NewCheckpointReader(prefix)
            variables = tf.compat.v1.global_variables()
            for v in variables:
                if not np.array_equal(sess.run(v), reader.get_tensor(v.op.name)):
                    raise SystemExit(f"restore failed: {v.op.name} differs from the checkpoint")
            max_pool = sess.run(outputs[7], {x: logmel, is_training: False})
        report[model] = len(variables)
        np.save(os.path.join(out_dir, model + ".npy"), max_pool)
    np.save(os.path.join(out_dir, "logmel.npy"), logmel)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f)
''')


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    if not HAVE_MUSICNN:
        pytest.skip("the musicnn wheel is not installed: pip install --no-deps musicnn==0.1.0")
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras is not installed: musicnn's TF1 graph needs legacy Keras")
    out = tmp_path_factory.mktemp("musicnn_ref")
    waves = synthetic_windows()
    if os.path.exists(ESC10_CLIP):          # plus real audio when ../shared is there
        from earmark.model.audio import load_waveform
        with open(ESC10_CLIP, "rb") as f:
            clip = load_waveform(f.read(), musicnn.SAMPLE_RATE_HZ)[0][:musicnn.WINDOW_SAMPLES]
        waves = np.concatenate([waves, np.pad(clip, (0, musicnn.WINDOW_SAMPLES - len(clip)))[None]])
    np.save(out / "waves.npy", waves)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-c", REFERENCE, str(out / "waves.npy"), str(out)],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    return waves, np.load(out / "logmel.npy"), report, {
        key: np.load(out / f"{name}.npy") for key, name in musicnn.CHECKPOINTS.items()}


def test_mel_matrix_equals_librosa():
    librosa = pytest.importorskip("librosa")
    ours = musicnn.slaney_mel_matrix()
    theirs = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-7)


@pytest.mark.slow
@needs_musicnn
def test_reference_restored_every_variable(reference):
    _, logmel, report, _ = reference
    assert report["n_frames"] == musicnn.PATCH_FRAMES
    # 11 batch norms × 4 + 8 convs × 2 + 2 dense × 2: the whole graph came from the checkpoint
    assert report["MSD_musicnn"] == report["MTT_musicnn"] == 64
    assert logmel.shape[1:] == (musicnn.PATCH_FRAMES, musicnn.N_MELS) and len(logmel) >= 3


@pytest.mark.slow
@needs_musicnn
@pytest.mark.parametrize("checkpoint", sorted(musicnn.CHECKPOINTS))
def test_network_matches_original_graph(reference, checkpoint):
    """Same log-mel input (musicnn's own) → the port's max_pool equals the TF1 graph's."""
    _, logmel, _, expected = reference
    got = musicnn.build_network(checkpoint)(logmel).numpy()
    assert got.shape == (len(logmel), musicnn.EMBEDDING_DIM)
    assert np.abs(expected[checkpoint]).max() > 1.0      # not a degenerate all-zero output
    # 1e-4 absolute for |values| ≤ 1, 1e-4 relative above (features reach ~80; float32 there
    # is 8e-6 per step and TF1 vs Keras 3 sum convolutions/batch norm in different orders)
    np.testing.assert_allclose(got, expected[checkpoint], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@needs_musicnn
def test_frontend_matches_musicnn_batch_data(reference):
    """TF-op frontend vs musicnn's librosa frontend: equal up to musicnn's own float16
    rounding, which may land one float16 step apart in a handful of bins."""
    waves, logmel, _, _ = reference
    ours = musicnn.MusicnnFrontend()(waves).numpy()
    diff = np.abs(ours - logmel)
    assert diff.max() <= 5e-4                       # one float16 step of the mel, after log10
    assert np.mean(diff > 1e-5) < 1e-3              # in at most 0.1 % of the bins


@pytest.mark.slow
@needs_musicnn
@pytest.mark.parametrize("checkpoint", sorted(musicnn.CHECKPOINTS))
def test_end_to_end_matches_original(reference, checkpoint):
    """Waveform → port (TF frontend + network) vs waveform → musicnn (librosa + TF1)."""
    waves, _, _, expected = reference
    got = musicnn.build_model(checkpoint)(waves).numpy()
    np.testing.assert_allclose(got, expected[checkpoint], rtol=1e-3, atol=3e-3)


@needs_musicnn
def test_pretrained_features_differ_from_random_init():
    waves = synthetic_windows(4, seed=1)
    pretrained = musicnn.build_model("MSD")(waves).numpy()
    other = musicnn.build_model("MTT")(waves).numpy()
    random = musicnn.build_model(None, seed=0)(waves).numpy()
    assert pretrained.shape == random.shape == (4, musicnn.EMBEDDING_DIM)

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]
    # a random-init draw gives unrelated features; MSD and MTT differ too
    assert abs(corr(pretrained, random)) < 0.8, corr(pretrained, random)
    assert np.abs(pretrained - random).mean() > 0.1 * np.abs(pretrained).mean()
    assert np.abs(pretrained - other).mean() > 0.05 * np.abs(pretrained).mean()


@needs_musicnn
def test_checksums_name_the_weights_loaded():
    msd, mtt = musicnn.build_network("MSD"), musicnn.build_network("MTT")
    rand0, rand0b, rand1 = (musicnn.build_network(None, seed=s) for s in (0, 0, 1))
    sums = {musicnn.weights_checksum(n) for n in (msd, mtt, rand0, rand1)}
    assert len(sums) == 4
    assert musicnn.weights_checksum(rand0) == musicnn.weights_checksum(rand0b)   # seeded
    assert musicnn.weights_checksum(msd) == musicnn.weights_checksum(musicnn.build_network("MSD"))


def _tf1_weights(network):
    return {f"{scope}/{v.name}": np.asarray(v.numpy()) for scope, layer in network.tf1_layers()
            for v in layer.weights}


def _write_tf1_checkpoint(prefix, arrays):
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[n]) for n in names])


def test_checkpoint_loads_by_name_and_fails_loudly(tmp_path):
    """Runs without the wheel: a random network's weights, written under the TF1 names."""
    source = musicnn.build_network(None, seed=3)
    arrays = _tf1_weights(source)
    assert len(arrays) == 52        # 9 batch norms × 4 + 8 convs × 2 (up to max_pool)
    _write_tf1_checkpoint(str(tmp_path / "full"), {**arrays, "dense/kernel": np.zeros((2, 2), np.float32)})
    loaded = musicnn.build_network(None, seed=4, prefix=str(tmp_path / "full"))
    assert musicnn.weights_checksum(loaded) == musicnn.weights_checksum(source)

    missing = dict(arrays)
    del missing["conv2d_6/kernel"]
    _write_tf1_checkpoint(str(tmp_path / "missing"), missing)
    with pytest.raises(musicnn.CheckpointMismatch, match="missing conv2d_6/kernel"):
        musicnn.build_network(None, prefix=str(tmp_path / "missing"))

    wrong = {**arrays, "batch_normalization_3/gamma": np.ones(50, np.float32)}
    _write_tf1_checkpoint(str(tmp_path / "wrong"), wrong)
    with pytest.raises(musicnn.CheckpointMismatch, match="batch_normalization_3/gamma"):
        musicnn.build_network(None, prefix=str(tmp_path / "wrong"))


def test_saved_keras_model_keeps_weights(tmp_path):
    """The model lives inside a .keras file without the wheel: its weights come back from
    the file (not from re-running the seeded init), frozen in front of a head."""
    import keras
    model = musicnn.build_model(None, seed=5)
    network = model.get_layer("musicnn_max_pool")
    for var in network.weights:               # weights no constructor would reproduce
        var.assign(var * 1.5 + 0.01)
    model.trainable = False
    inputs = keras.Input((musicnn.WINDOW_SAMPLES,))
    full = keras.Model(inputs, keras.layers.Dense(3)(model(inputs)))
    assert len(full.trainable_weights) == 2 and len(full.non_trainable_weights) == 52
    waves = synthetic_windows(2, seed=2)
    path = str(tmp_path / "m.keras")
    full.save(path)
    back = keras.saving.load_model(path)
    np.testing.assert_array_equal(back(waves).numpy(), full(waves).numpy())
    loaded = back.get_layer(model.name).get_layer("musicnn_max_pool")
    assert musicnn.weights_checksum(loaded) == musicnn.weights_checksum(network)
    assert musicnn.weights_checksum(loaded) != musicnn.weights_checksum(musicnn.build_network(None, seed=5))


def test_unknown_checkpoint_rejected():
    with pytest.raises(ValueError, match="unknown musicnn checkpoint"):
        musicnn.checkpoint_prefix("big")
