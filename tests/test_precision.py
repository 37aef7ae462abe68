"""`--precision auto|float32|bfloat16` (issue 14): what `auto` picks on which hardware, the
bfloat16 model computing in bfloat16 with float32 in and out, and the one-line refusal."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from earmark.model import export, precision


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


def test_bfloat16_on_a_model_without_an_image_base_is_a_one_line_error(tiny_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    ensemble = {**meta, "base": {**meta["base"], "kind": "ensemble", "name": "birdnet+musicnn_msd"}}
    meta["base"] = {**meta["base"], "kind": "embedding", "name": "musicnn_msd"}
    (model_dir / "model.json").write_text(json.dumps(meta))
    for audio_base in (meta, ensemble):
        assert precision.effective("auto", audio_base) == "float32"
        with pytest.raises(ValueError, match="image-base models only"):
            precision.check("bfloat16", audio_base)
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
