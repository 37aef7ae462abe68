"""`--precision auto|float32|bfloat16|int8`: the arithmetic a model's pretrained CNN runs in at
inference (`earmark label`, `earmark evaluate`). `earmark train` computes its bottleneck
cache in float32 always: the cache is shared across runs and machines and must not depend
on which CPU made it.

The model file always stays float32. `bfloat16` sets the Keras `mixed_bfloat16` policy on the
layers of the image base (the CNN inside the serving model's `embedder`): weights stay
float32, each layer computes in bfloat16. The log-mel frontend, the adapter that turns it into
an image and the head stay float32, so the thresholds see float32 probabilities.

`auto` is bfloat16 only where the hardware computes it natively, float32 elsewhere (emulated
bfloat16 on a CPU without it labeled 10 % slower than float32 here; parity and speed:
`benchmarks/precision_parity.py`, figures in docs/benchmarks.md):
- a CPU with AVX512_BF16 or AMX-BF16 (`/proc/cpuinfo` flags; AMD Zen 4+, Intel Cooper Lake,
  Sapphire Rapids and later);
- a GPU of compute capability 8.0 or higher (A100, H100, ...).

`int8`: the image base and head run in TFLite with 8-bit weights, from the
`model_int8.tflite` that `earmark train` ships (image bases) beside the float32 model
(`model.int8`), without TensorFlow; faster on CPUs, with scores that move more than
bfloat16's. `auto` chooses it for a model whose 8-bit detector `train` measured on its
calibration audio at event F1 within `INT8_PARITY_F1` of the float one (`int8_parity_holds`),
when only scores are wanted (not `--formats embeddings`) and no GPU is visible.

Image bases only: musicnn's and BirdNET's own frontends and weights, and ensembles of them,
are left as they ship (BirdNET runs in TFLite), so `auto` is float32 for them and
`bfloat16` and `int8` are refused.
"""
import functools
import os

PRECISIONS = ("auto", "float32", "bfloat16", "int8")
INT8_PARITY_F1 = 0.01   # `auto` serves the 8-bit file when its event F1 is at most this lower
NVIDIA_GPUS = "/proc/driver/nvidia/gpus"   # a folder per GPU where NVIDIA's driver runs
IMAGE_BASE_ONLY = ("bfloat16", "int8")
DEFAULT_PRECISION = "auto"
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BFLOAT16_GPU_MIN_CAPABILITY = (8, 0)
BASE_LAYER = "embedder"     # the serving model's image base (`export.serving_model`)
ADAPTER_LAYER = "to_image"  # inside it, the log-mel → image adapter (stays float32)
AUDIO_BASE_KINDS = ("embedding", "ensemble")   # model.json base kinds that run as they ship


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set:
    """The CPU's feature flags (Linux); empty where unknown."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_visible(gpus_dir: str = None) -> bool:
    """Whether this process may use an NVIDIA GPU, told without importing TensorFlow: the
    driver lists one (in `gpus_dir`, default NVIDIA_GPUS) and CUDA_VISIBLE_DEVICES does not
    hide them all."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    try:
        return bool(os.listdir(gpus_dir or NVIDIA_GPUS))
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def native_bfloat16() -> str:
    """Why this machine computes bfloat16 natively (a short reason), or "" where it does not."""
    found = sorted(set(BFLOAT16_CPU_FLAGS) & cpu_flags())
    if found:
        return f"CPU has {', '.join(found)}"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return ""
    import tensorflow as tf
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= BFLOAT16_GPU_MIN_CAPABILITY:
            return f"GPU of compute capability {capability[0]}.{capability[1]}"
    return ""


def resolve(precision: str) -> str:
    """`auto` → bfloat16 where native, else float32 (the hardware's part of the choice;
    `effective` adds the model's); the others as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


def runs_image_base(meta: dict) -> bool:
    """True for a model.json whose base is an image CNN (not an embedding base/ensemble)."""
    return meta.get("base", {}).get("kind") not in AUDIO_BASE_KINDS


def check(precision: str, meta: dict) -> None:
    """ValueError for a precision this model cannot run in (bfloat16 or int8 without an
    image base; int8 for a model trained with `--no-int8`)."""
    resolve(precision)
    if precision in IMAGE_BASE_ONLY and not runs_image_base(meta):
        raise ValueError(f"{precision} runs image-base models only; this model's base is "
                         f"{meta.get('base', {}).get('name')} (runs as it ships: float32)")
    if precision == "int8" and not meta.get("int8"):
        raise ValueError("this model has no 8-bit file (trained with --no-int8, or by an "
                         "earmark before 8-bit files were the default); re-run 'earmark "
                         "train' without --no-int8 to ship one")


def int8_parity_holds(meta: dict) -> bool:
    """Whether the model ships an 8-bit file that `earmark train` checked: its
    detector's event F1 on the calibration audio within INT8_PARITY_F1 of the float one's."""
    return bool(((meta.get("int8") or {}).get("parity") or {}).get("holds"))


def effective(precision: str, meta: dict, scores_only: bool = True) -> str:
    """The precision a model (its model.json) runs in here when `precision` is asked for:
    `auto` is int8 for a model whose 8-bit file held parity (`int8_parity_holds`) when only
    scores are wanted (the 8-bit file has no embedding output) on a machine without a GPU
    (the 8-bit file runs on the CPU), else `resolve`'s."""
    check(precision, meta)
    if not runs_image_base(meta):
        return "float32"
    if precision == "auto" and scores_only and int8_parity_holds(meta) and not gpu_visible():
        return "int8"
    return resolve(precision)


def apply(model, precision: str) -> str:
    """Run `model`'s image base in `precision` (resolved; see `resolve`), in place, before
    its first call is traced. → the precision it runs in: float32 for a model without an
    image base (`check` refuses an explicit bfloat16 for those before loading). Not for
    int8: `serving.load` serves the model's 8-bit file instead."""
    import keras
    chosen = resolve(precision)
    if chosen == "int8":
        raise ValueError("int8 is not set on a Keras model: serving.load serves its "
                         "model_int8.tflite")
    if chosen == "float32" or not isinstance(model, keras.Model) or \
            BASE_LAYER not in [l.name for l in model.layers]:
        return "float32"
    for layer in model.get_layer(BASE_LAYER).layers:
        if layer.name != ADAPTER_LAYER and not isinstance(layer, keras.layers.InputLayer):
            for sub in _layers(layer):
                sub.dtype_policy = "mixed_bfloat16"
    return chosen


def _layers(layer):
    """`layer` and every layer nested in it (a Functional base holds its blocks)."""
    yield layer
    for sub in getattr(layer, "layers", []) or []:
        yield from _layers(sub)
