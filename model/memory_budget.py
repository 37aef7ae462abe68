"""Batch sizes from a memory budget: `earmark label`'s peak memory bounded by default.

`label`'s peak RSS is close to a line in its batch size (`benchmarks/label_memory.py` fits
it per base):

    peak ≈ fixed + batch · (window input + activations per window)

`fixed` is the process without a batch in flight: Python, TensorFlow and Beam
(`RUNTIME_BYTES`), the loaded model (`model_fixed_bytes`) and the pipeline's own buffers
(`LABEL_PIPELINE_BYTES`); per window, the float32 window (4 · `FeatureConfig.patch_samples`
bytes) and what the base keeps alive for it while a batch is scored. The figures are
measured, never guessed: `MEASURED` below, one entry per base.

    from earmark.model import memory_budget
    batch = memory_budget.label_batch_size(meta, memory_budget.parse_bytes("1.5GB"),
                                           requested=args.batch_size)
    memory_budget.expected_peak_bytes(meta, batch)   # > budget: the model alone is over it

or, with figures of one's own, the pure rule `batch_size_for(budget, window_input_bytes,
per_window_activation_bytes, fixed_bytes, requested, max_batch)`.

`meta` is model.json as `model_files.read_meta` returns it: `feature_config` gives the
window, `base.name` (and `base.input_px` for an image base, `base.members` for an ensemble)
the measured figures. No TensorFlow, no Beam.
"""
import dataclasses
import math
import re

from earmark.model.features import FeatureConfig

DEFAULT_BUDGET_BYTES = 1_500_000_000   # `label --memory-budget` default: 1.5 GB peak RSS
DEFAULT_MAX_BATCH = 128                # the old fixed `--batch-size`: never more by default
WINDOW_DTYPE_BYTES = 4                 # float32 waveform windows

# --- measured figures -------------------------------------------------------------------
# benchmarks/label_memory.py, 2026-12-04, on 2 shared cores of an Intel Xeon (AVX512_BF16,
# AMX; 23 GB RAM), TensorFlow 2.17 CPU. Part 1 (scoring path, `--batches 2,8,16,32,64,128
# --repeats 2`, float32): the peak RSS (VmHWM) of a fresh process that loads the model as
# `label` does and scores one batch three times; per window: the least-squares slope over
# batches 2-64 less the window itself; fixed: the intercept of the line with that slope
# above every run, less the runtime. docs/benchmarks.md (Memory) has the table.
RUNTIME_BYTES = 653_324_288     # Python + TensorFlow + Beam imported, no model yet
# Part 2 (whole `label` runs, DirectRunner, default flags): a run's peak above the scoring
# path's line at the same batch, at most 147 MB measured (InceptionV3 at its default
# bfloat16 here, 10 000 short files, batch 128; musicnn 99 MB on a 3-hour file, batch 10;
# BirdNET under 10 MB). It grows about 10 MB per 1 000 files: 200 MB leaves room for some
# 50 000.
LABEL_PIPELINE_BYTES = 200_000_000


@dataclasses.dataclass(frozen=True)
class Measured:
    """One base's measured figures (bytes)."""
    model_fixed_bytes: int              # the loaded model (and its traced graph) above RUNTIME_BYTES
    per_window_activation_bytes: int    # per window of a batch, beyond the window itself
    input_px: int = None                # image bases: the input size they were measured at
    # bases that run windows in batches of their own (BirdNET's .tflite embedder, which
    # keeps every intermediate tensor of its batch): the sizes it can be built with, largest
    # (fastest) first; `model_fixed_bytes` is at the last (1), each further window of its
    # batch adds `per_inner_window_bytes`
    inner_batches: tuple = ()
    per_inner_window_bytes: int = 0


MEASURED = {
    # musicnn: its peaks scatter at large batches (4.2 and 4.8 GB at 128 in two runs, 3.1 GB
    # in a third; the line says 5.5); the MTT checkpoint is the same network, other weights
    "musicnn_msd": Measured(335_461_380, 35_415_166),
    "musicnn_mtt": Measured(335_461_380, 35_415_166),
    # BirdNET's .tflite embedder runs batches of its own (padded) and keeps every
    # intermediate tensor of them: 1.00 / 1.20 / 1.64 GB peaks at 1 / 2 / 4 windows per
    # call (label batch 4; +1.07 MB per label window), 2026-12-05, same machine
    "birdnet": Measured(345_000_000, 500_000, inner_batches=(4, 2, 1),
                        per_inner_window_bytes=220_000_000),
    "inception_v3": Measured(272_447_437, 1_570_294, input_px=96),
    "vgg16": Measured(236_228_241, 5_668_218, input_px=96),
    "mobilenet_v2": Measured(111_850_710, 2_711_190, input_px=96),
    "efficientnet_b0": Measured(146_953_371, 2_762_669, input_px=96),
    "resnet50": Measured(294_066_837, 1_793_387, input_px=96),
    # another input size: activations × (px / input_px)²; InceptionV3 at 160 px measured
    # 3.79 MB per window against the 4.36 MB this predicts from 96 px
}


@dataclasses.dataclass(frozen=True)
class WindowCost:
    """What `batch_size_for` needs for one model (bytes)."""
    window_input_bytes: int
    per_window_activation_bytes: int
    fixed_bytes: int
    measured: bool     # False: a base without figures here; the costliest measured ones assumed
    inner_batch_size: int = None       # the base's own batch, if it has one (BirdNET)

    @property
    def min_batch(self) -> int:
        """Fewer windows per call than the base's own batch save no memory, only time."""
        return self.inner_batch_size or 1

    @property
    def per_window_bytes(self) -> int:
        return self.window_input_bytes + self.per_window_activation_bytes

    def peak_bytes(self, batch_size: int) -> int:
        return self.fixed_bytes + batch_size * self.per_window_bytes


def batch_size_for(budget_bytes: int, window_input_bytes: int, per_window_activation_bytes: int,
                   fixed_bytes: int, requested: int = None, max_batch: int = DEFAULT_MAX_BATCH,
                   min_batch: int = 1) -> int:
    """The largest batch whose predicted peak, `fixed_bytes + batch · (window_input_bytes +
    per_window_activation_bytes)`, stays within `budget_bytes`; at most `requested` when
    given (a `--batch-size` is a ceiling the budget can lower, never raise), else at most
    `max_batch`; never below `min_batch` (a base that pads every call to a batch of its own)
    unless the ceiling is, and always at least 1: a budget below `fixed_bytes` cannot be met
    by batching (compare the two to warn)."""
    ceiling = requested if requested is not None else max_batch
    if ceiling < 1:
        raise ValueError(f"the batch ceiling must be >= 1, got {ceiling}")
    floor = max(1, min(min_batch, ceiling))
    per_window = window_input_bytes + per_window_activation_bytes
    if per_window <= 0:
        return int(ceiling)
    fits = math.floor((budget_bytes - fixed_bytes) / per_window)
    return int(max(floor, min(ceiling, fits)))


def _costliest() -> Measured:
    return Measured(max(m.model_fixed_bytes for m in MEASURED.values()),
                    max(m.per_window_activation_bytes for m in MEASURED.values()))


def _members(meta: dict) -> list:
    """(Measured, measured?, image-size scale) of each network the model runs."""
    base = meta.get("base") or {}
    names = [m.get("name") for m in base.get("members", [])] or [base.get("name")]
    found = []
    for name in names:
        m = MEASURED.get(name)
        scale = 1.0
        if m is not None and m.input_px and base.get("input_px"):
            scale = (base["input_px"] / m.input_px) ** 2
        found.append((m or _costliest(), m is not None, scale))
    return found


def window_cost(meta: dict, inner_batch_size: int = None) -> WindowCost:
    """The figures of the model model.json `meta` describes: its window from
    `feature_config`, its base's measured figures (an image base's activations scaled by the
    square of its `input_px` over the measured one; an ensemble: its members' summed); a base
    without figures here gets the costliest measured ones (`measured` False). A base with a
    batch of its own (BirdNET) is costed at `inner_batch_size` (None: its largest)."""
    config = FeatureConfig.from_dict(meta["feature_config"])
    members = _members(meta)
    inner = None
    if any(m.inner_batches for m, _, _ in members):
        inner = inner_batch_size or max(b for m, _, _ in members for b in m.inner_batches)
    fixed = sum(m.model_fixed_bytes + ((inner or 1) - 1) * m.per_inner_window_bytes
                for m, _, _ in members)
    return WindowCost(window_input_bytes=WINDOW_DTYPE_BYTES * config.patch_samples,
                      per_window_activation_bytes=sum(int(round(m.per_window_activation_bytes * s))
                                                      for m, _, s in members),
                      fixed_bytes=RUNTIME_BYTES + LABEL_PIPELINE_BYTES + fixed,
                      measured=all(ok for _, ok, _ in members), inner_batch_size=inner)


def inner_batch_size(meta: dict, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> int:
    """For a model whose base runs batches of its own (BirdNET): the largest of its batch
    sizes whose predicted peak, with as many label windows per call, stays within
    `budget_bytes` (else its smallest); None for every other model."""
    sizes = sorted({b for m, _, _ in _members(meta) for b in m.inner_batches}, reverse=True)
    for size in sizes:
        if window_cost(meta, size).peak_bytes(size) <= budget_bytes:
            return size
    return sizes[-1] if sizes else None


def label_batch_size(meta: dict, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                     requested: int = None, max_batch: int = DEFAULT_MAX_BATCH) -> int:
    """`earmark label`'s batch for the model `meta` within `budget_bytes` of peak RSS (its
    base's own batch, if it has one, at `inner_batch_size(meta, budget_bytes)`)."""
    c = window_cost(meta, inner_batch_size(meta, budget_bytes))
    return batch_size_for(budget_bytes, c.window_input_bytes, c.per_window_activation_bytes,
                          c.fixed_bytes, requested, max_batch, c.min_batch)


def expected_peak_bytes(meta: dict, batch_size: int, inner_batch_size: int = None) -> int:
    """`label`'s predicted peak RSS for the model `meta` at `batch_size` (and its base's own
    batch at `inner_batch_size`; None: its largest)."""
    return window_cost(meta, inner_batch_size).peak_bytes(batch_size)


_UNITS = {"": 1, "b": 1, "k": 10 ** 3, "kb": 10 ** 3, "m": 10 ** 6, "mb": 10 ** 6,
          "g": 10 ** 9, "gb": 10 ** 9, "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30}


def parse_bytes(text) -> int:
    """'1.5GB', '1500M', '2GiB', '1500000000' → bytes (k/M/G decimal, KiB/MiB/GiB binary);
    ValueError for anything else or a size that is not > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m and m.group(2).lower()
    if not m or unit not in _UNITS:
        raise ValueError("must be a size such as 1.5GB, 800MB or 2GiB")
    size = int(float(m.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError("must be a size above 0")
    return size
