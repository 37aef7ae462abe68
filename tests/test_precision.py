"""`--precision auto|float32|bfloat16|int8` (issue 14): what `auto` picks on which hardware,
the bfloat16 model computing in bfloat16 with float32 in and out, the int8 model's 8-bit
TFLite path, and the one-line refusal."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from earmark.model import export, precision, serving


@pytest.fixture
def cpu(monkeypatch):
    """Pretend the CPU has the given flags (and no GPU); → setter."""
    def set_flags(*flags):
        monkeypatch.setattr(precision, "cpu_flags", lambda: set(flags) | {"avx2", "fma"})
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
        precision.native_bfloat16.cache_clear()
    yield set_flags
    precision.native_bfloat16.cache_clear()


@pytest.mark.parametrize("flags,auto", [((), "float32"), (("avx512_bf16",), "bfloat16"),
                                        (("amx_bf16", "amx_tile"), "bfloat16"),
                                        (("avx512f", "avx512_vnni"), "float32")])
def test_auto_is_bfloat16_only_where_the_cpu_computes_it_natively(cpu, flags, auto):
    cpu(*flags)
    assert precision.resolve("auto") == auto
    assert precision.resolve("float32") == "float32" and precision.resolve("bfloat16") == "bfloat16"
    with pytest.raises(ValueError):
        precision.resolve("float16")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx2", "avx512_bf16"} <= precision.cpu_flags(str(info))
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_bfloat16_runs_the_image_base_only_and_scores_stay_float32(tiny_model):
    reference, _ = export.load(tiny_model, "float32")
    model, meta = export.load(tiny_model, "bfloat16")
    assert precision.effective("bfloat16", meta) == "bfloat16"
    policies = {l.name: l.dtype_policy.name for l in model.layers}
    assert policies["log_mel"] == "float32" and policies["head"] == "float32"
    embedder = model.get_layer("embedder")
    assert embedder.get_layer("to_image").dtype_policy.name == "float32"
    inner = [l for l in embedder.layers if l.name not in ("log_mel", "to_image")]
    assert inner and all(l.dtype_policy.name == "mixed_bfloat16" for l in inner)
    assert all(v.dtype == "float32" for v in model.weights)   # the weights stay float32
    windows = np.random.default_rng(0).normal(0, 0.1, (16, 15600)).astype(np.float32)
    ours, theirs = np.asarray(model(windows)), np.asarray(reference(windows))
    assert ours.dtype == np.float32
    assert np.allclose(ours.sum(axis=1), 1, atol=1e-5)    # the head's softmax in float32
    # bfloat16 keeps 8 bits of mantissa: close, and not identical (it did compute in it)
    assert 0 < np.abs(ours - theirs).max() < 0.05


@pytest.fixture(scope="module")
def tiny_int8_model(tmp_path_factory):
    """`earmark train` (8-bit file on by default for image bases) on the tiny synthetic data:
    model.keras + model_int8.tflite."""
    from earmark.commands import train
    from tests.fixtures import make_prepared, train_args
    root = tmp_path_factory.mktemp("tiny_int8")
    prepared = make_prepared(str(root / "prepared"))
    train.main(train_args(prepared, root / "model", root / "cache", "--epochs", "4",
                          int8=None))
    return str(root / "model")


def test_int8_runs_the_embedder_and_head_in_8_bit_tflite_and_the_frontend_in_float32(
        tiny_int8_model):
    from earmark.model.int8 import Int8Model
    reference, meta = export.load(tiny_int8_model, "float32")
    model, _ = export.load(tiny_int8_model, "int8")
    assert isinstance(model, Int8Model) and precision.effective("int8", meta) == "int8"
    shipped = os.path.join(tiny_int8_model, "model_int8.tflite")
    float32_bytes = sum(int(np.prod(w.shape)) * 4 for w in
                        export.log_mel_model(reference).weights)
    assert meta["int8"]["bytes"] == os.path.getsize(shipped) < 0.4 * float32_bytes  # 8-bit
    assert "model_int8.tflite" in export.model_files(meta)   # copied from gs:// with the rest
    windows = np.random.default_rng(0).normal(0, 0.1, (40, 15600)).astype(np.float32)
    ours, theirs = model.predict(windows, batch_size=16), np.asarray(reference(windows))
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.allclose(ours.sum(axis=1), 1, atol=1e-5)    # the head's softmax, float32 out
    assert 0 < np.abs(ours - theirs).max() < 0.05         # 8-bit weights: close, not equal
    # any batch size, in any order (smaller ones padded to the largest seen), and the
    # log-mel path `evaluate` runs on prepared data gives the same scores
    for n in (7, 40, 1, 0):
        assert np.allclose(model.predict_on_batch(windows[:n]), ours[:n], atol=1e-6)
    log_mels = np.asarray(reference.get_layer("log_mel")(windows))
    assert np.allclose(export.log_mel_model(model).predict(log_mels, batch_size=8), ours,
                       atol=1e-5)


def test_int8_needs_the_shipped_file_intact(tiny_int8_model, tiny_model, tmp_path):
    from earmark.model.errors import UserError
    _, float32_only = export.load(tiny_model)
    assert "int8" not in float32_only and not os.path.exists(
        os.path.join(tiny_model, "model_int8.tflite"))
    with pytest.raises(ValueError, match="no 8-bit file .* without --no-int8"):
        precision.check("int8", float32_only)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_int8_model, model_dir)
    with open(model_dir / "model_int8.tflite", "r+b") as f:   # one byte changed
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    with pytest.raises(UserError, match="model_int8.tflite is not the one model.json names"):
        export.load(str(model_dir), "int8")
    assert export.load(str(model_dir), "float32")[0] is not None   # float32 never reads it


def test_int8_file_with_fewer_outputs_than_labels_is_refused_on_loading(tiny_int8_model, tmp_path):
    """model.json without `head` (nothing to compare in the card): the 8-bit file's output
    width is compared with the labels."""
    from earmark.model.errors import UserError
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_int8_model, model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    del meta["head"]
    meta["labels"].append("extra")
    meta["post_processing"]["extra"] = meta["post_processing"][meta["labels"][0]]
    (model_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="model.json lists 3 labels but model_int8.tflite has 2 "
                                        "outputs; re-run 'earmark train'"):
        serving.load(str(model_dir), "int8")


def test_a_model_is_loaded_once_per_process_until_its_files_change(tiny_model, tmp_path):
    """A second label run of one model in a process skips Keras' load and the trace; a
    model re-trained into the same folder (a serving file replaced) is loaded again."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    first = serving.predictor(str(model_dir))
    assert serving.predictor(str(model_dir)) is first
    assert serving.predictor(str(model_dir), embedder_batch_size=8) is not first  # other settings
    keras_file = model_dir / export.MODEL_FILE
    (model_dir / "new.keras").write_bytes(keras_file.read_bytes())   # same bytes, a new file
    os.replace(model_dir / "new.keras", keras_file)
    again = serving.predictor(str(model_dir))
    assert again is not first and serving.predictor(str(model_dir)) is again
    windows = np.random.default_rng(0).normal(0, 0.1, (3, first.window_samples)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(windows), first.predict(windows))


def test_train_int8_is_refused_for_embedding_bases(tmp_path):
    from earmark.model import train
    from earmark.model.errors import UserError
    from earmark.model.train_config import TrainConfig
    config = TrainConfig(data_dir=str(tmp_path), model_dir=str(tmp_path / "model"),
                         base="musicnn", int8=True)
    with pytest.raises(UserError, match="--int8: image bases only; musicnn_msd runs as it ships"):
        train.train(config)
    assert not os.path.exists(tmp_path / "model")


def test_bfloat16_on_a_model_without_an_image_base_is_a_one_line_error(tiny_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    ensemble = {**meta, "base": {**meta["base"], "kind": "ensemble", "name": "birdnet+musicnn_msd"}}
    meta["base"] = {**meta["base"], "kind": "embedding", "name": "musicnn_msd"}
    (model_dir / "model.json").write_text(json.dumps(meta))
    for audio_base in (meta, ensemble):
        assert precision.effective("auto", audio_base) == "float32"
        for asked in ("bfloat16", "int8"):
            with pytest.raises(ValueError, match=f"{asked} runs image-base models only"):
                precision.check(asked, audio_base)
    (tmp_path / "in").mkdir()
    r = subprocess.run([sys.executable, "-m", "earmark", "label", "--model", str(model_dir),
                        "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                        "--precision", "bfloat16"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        "earmark: error: --precision bfloat16: bfloat16 runs image-base models only; this "
        "model's base is musicnn_msd (runs as it ships: float32); use --precision auto or "
        "float32"]
    assert not os.path.exists(tmp_path / "out" / "segments.csv")


def test_auto_is_int8_only_for_a_parity_checked_8_bit_file_and_scores_only():
    image = {"base": {"kind": "image", "name": "vgg16"}, "labels": ["a"]}
    held = {**image, "int8": {"sha256": "x", "parity": {"holds": True}}}
    lost = {**image, "int8": {"sha256": "x", "parity": {"holds": False}}}
    unchecked = {**image, "int8": {"sha256": "x"}}   # trained --int8 before parity was measured
    hardware = precision.resolve("auto")
    assert precision.effective("auto", held) == "int8"
    assert precision.effective("auto", held, scores_only=False) == hardware  # embeddings
    assert precision.effective("float32", held) == "float32"
    for meta in (lost, unchecked, image):
        assert precision.effective("auto", meta) == hardware
    audio = {**held, "base": {"kind": "embedding", "name": "musicnn_msd"}}
    assert precision.effective("auto", audio) == "float32"


def test_evaluate_on_prepared_data_runs_the_8_bit_file(tiny_int8_model, tmp_path):
    """`evaluate --precision int8` on prepared log-mel patches scores them with the 8-bit file
    (its log-mel path), as `label --precision int8` scores waveform windows."""
    from earmark.model import evaluate
    with open(os.path.join(tiny_int8_model, "model.json")) as f:
        prepared = json.load(f)["training"]["data"]
    reports = {p: evaluate.evaluate_prepared(tiny_int8_model, prepared, "validation",
                                             report_dir=str(tmp_path / p), precision=p)
               for p in ("float32", "int8")}
    assert [r["numeric_precision"] for r in reports.values()] == ["float32", "int8"]
    assert reports["int8"]["examples"] == reports["float32"]["examples"] > 0


def test_auto_keeps_a_visible_gpu_and_reads_it_without_tensorflow(tmp_path, monkeypatch):
    """The 8-bit file runs on the CPU: where NVIDIA's driver lists a GPU this process may
    use, `auto` stays with TensorFlow (which runs the model there)."""
    held = {"base": {"kind": "image", "name": "vgg16"}, "labels": ["a"],
            "int8": {"sha256": "x", "parity": {"holds": True}}}
    gpus = tmp_path / "gpus"
    gpus.mkdir()
    assert not precision.gpu_visible(str(gpus))                   # the driver lists none
    (gpus / "0000:00:04.0").mkdir()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert precision.gpu_visible(str(gpus))
    monkeypatch.setattr(precision, "NVIDIA_GPUS", str(gpus))
    assert precision.effective("auto", held) != "int8"
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not precision.gpu_visible(str(gpus)) and precision.effective("auto", held) == "int8"
    assert not precision.gpu_visible(str(tmp_path / "no driver"))


def test_int8_falls_back_to_tensorflows_interpreter_without_litert(tiny_int8_model, monkeypatch):
    """Where the `ai-edge-litert` wheel is missing, the same 8-bit file runs in TensorFlow's
    own TFLite interpreter, to the same scores."""
    from earmark.model.int8 import Int8Model
    windows = np.random.default_rng(1).normal(0, 0.1, (5, 15600)).astype(np.float32)
    with open(os.path.join(tiny_int8_model, "model.json")) as f:
        meta = json.load(f)
    litert = Int8Model.from_dir(tiny_int8_model, meta).predict_on_batch(windows)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)        # import fails
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    fallback = Int8Model.from_dir(tiny_int8_model, meta)
    np.testing.assert_allclose(fallback.predict_on_batch(windows), litert, atol=1e-6)
    assert type(fallback._interpreter).__module__.startswith("tensorflow")
