"""Per-window scores of one recording → labeled time segments. Pure numpy.

Window k starts at k·hop and is `window_s` long; it "owns" the hop-long interval centred
on its middle, so consecutive positive windows tile time without overlap and a segment
runs from the first positive window's interval start to the last one's end.

Each label has its own `PostProcessing` (threshold and low threshold, smoothing, minimum
duration, merge gap): `earmark train` chooses them on validation recordings and ships them
in `model.json`; `earmark label` uses them unless a flag overrides.
"""
import dataclasses
import math

import numpy as np


def is_number(v) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class PostProcessing:
    """How one label's window scores become segments; units in the names."""
    threshold: float = 0.5       # a (smoothed) window score at or above it is positive
    smoothing_windows: int = 1   # centred moving average over this many windows (1 = none)
    min_duration_s: float = 0.0  # drop shorter segments
    max_gap_s: float = 0.0       # merge same-label segments closer than this
    extend_s: float = 0.0        # widen each run of positive windows by this on both sides
    # hysteresis: a dip between positive windows that stays at or above this (<= threshold)
    # does not split a segment (`threshold_runs`); None: the threshold (no hysteresis)
    low_threshold: float = None

    # field → (is the value good, what a good value is): the one copy of the range rules
    RULES = {"threshold": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
             "smoothing_windows": (lambda v: is_whole(v) and v >= 1, "a whole number >= 1"),
             "min_duration_s": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
             "max_gap_s": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
             "extend_s": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
             "low_threshold": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]")}
    FIELDS = tuple(RULES)
    # fields a settings dict may lack (model.json written before them) → the field whose
    # value they then take
    OPTIONAL = {"low_threshold": "threshold"}
    REQUIRED = ()   # the other fields (set below the class)

    def __post_init__(self):
        if self.low_threshold is None:
            object.__setattr__(self, "low_threshold", self.threshold)

    @classmethod
    def problem(cls, d) -> tuple:
        """(field, what is wrong) of the first missing or out-of-range field of the settings
        dict `d` (an OPTIONAL one may be missing), or of a low threshold above the
        threshold, else None."""
        for field, (ok, what) in cls.RULES.items():
            if field not in d:
                if field in cls.OPTIONAL:
                    continue
                return field, "is missing"
            if not ok(d[field]):
                return field, f"is {d[field]!r}; it must be {what}"
        if d.get("low_threshold", d["threshold"]) > d["threshold"]:
            return "low_threshold", (f"is {d['low_threshold']!r}; it must be at most the "
                                     f"threshold ({d['threshold']!r})")
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PostProcessing":
        """Every field, in range (`problem`), else ValueError; a missing OPTIONAL field takes
        its stand-in's value (an older model.json: the low threshold is the threshold)."""
        wrong = cls.problem(d)
        if wrong:
            raise ValueError(" ".join(wrong))
        given = {**{f: d[stand_in] for f, stand_in in cls.OPTIONAL.items()}, **d}
        return cls(**{f: (int if f == "smoothing_windows" else float)(given[f])
                      for f in cls.FIELDS})

    @classmethod
    def parse(cls, field: str, text: str):
        """One field's value from text (a flag's): int for smoothing_windows, float for the
        rest, in range (RULES), else ValueError("must be WHAT")."""
        ok, what = cls.RULES[field]
        try:
            value = (int if field == "smoothing_windows" else float)(text)
        except ValueError:
            raise ValueError(f"must be {what}") from None
        if not ok(value):
            raise ValueError(f"must be {what}")
        return value


assert PostProcessing.FIELDS == tuple(f.name for f in dataclasses.fields(PostProcessing))
PostProcessing.REQUIRED = tuple(f for f in PostProcessing.FIELDS
                                if f not in PostProcessing.OPTIONAL)


@dataclasses.dataclass(frozen=True)
class WindowGrid:
    hop_s: float     # seconds between window starts
    window_s: float  # seconds one window covers


@dataclasses.dataclass(frozen=True, order=True)
class Segment:
    """A labeled time span of a recording. `file` (the recording's key) and `model_id` (the
    model that found it) are set where the segment is written or read back
    (`pipelines/label_formats.py`); empty while one recording's scores are post-processed."""
    start_s: float
    end_s: float
    label: str
    confidence: float
    file: str = ""
    model_id: str = ""


def smooth(scores: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over the window axis of [windows] or [windows, classes];
    edges use the windows that exist."""
    if width <= 1 or len(scores) == 0:
        return scores
    kernel, n = np.ones(width), len(scores)
    first = (width - 1) // 2  # numpy's mode="same" for n >= width; it returns `width`
    # values when the recording has fewer windows than that, so slice "full" instead

    def centred(c):
        return np.convolve(c, kernel, mode="full")[first:first + n]
    total = np.apply_along_axis(centred, 0, scores)
    counts = centred(np.ones(n))
    return total / (counts[:, None] if scores.ndim == 2 else counts)


def window_bounds(num_windows: int, grid: WindowGrid, duration_s: float):
    """(lo, hi) arrays: the time interval each window owns."""
    centres = np.arange(num_windows) * grid.hop_s + grid.window_s / 2
    lo = np.clip(centres - grid.hop_s / 2, 0.0, duration_s)
    hi = np.clip(centres + grid.hop_s / 2, 0.0, duration_s)
    if num_windows:
        lo[0] = 0.0  # the first window also owns the audio before its centre,
        hi[-1] = duration_s  # and the last one the tail after it
    return lo, hi


def threshold_runs(smoothed: np.ndarray, threshold: float, low_threshold: float = None):
    """(first, last) window indices of each run of windows at or above `threshold`, where
    runs that only a dip at or above `low_threshold` (default: `threshold`, none) separates
    are one: a double threshold (hysteresis) that keeps an event whole through a dip of its
    scores. Unlike the textbook one, a run still starts and ends at windows at or above
    `threshold`: it bridges dips, it does not stretch an event's edges (or a short noise
    bump) out to where the scores fall below the low threshold."""
    positive = np.flatnonzero(smoothed >= threshold)
    if low_threshold is None or low_threshold >= threshold:
        breaks = np.flatnonzero(np.diff(positive) > 1)
    else:   # a break where some window between two positive ones is under the low threshold
        under = np.concatenate(([0], np.cumsum(smoothed < low_threshold)))
        breaks = np.flatnonzero(under[positive[1:]] > under[positive[:-1] + 1])
    return (np.concatenate((positive[:1], positive[breaks + 1])),
            np.concatenate((positive[breaks], positive[-1:])))


def merge_runs(firsts, lasts, pp: PostProcessing, lo: np.ndarray, hi: np.ndarray):
    """Runs (`threshold_runs`) → (starts_s, ends_s, first, last) arrays of the segments they
    make: each run widened by `extend_s` on both sides, runs closer than `max_gap_s` merged,
    segments shorter than `min_duration_s` dropped (times unrounded)."""
    if len(firsts) == 0:
        empty = np.zeros(0)
        return empty, empty, firsts, lasts
    starts = np.maximum(lo[firsts] - pp.extend_s, 0.0)
    ends = np.minimum(hi[lasts] + pp.extend_s, float(hi[-1]))
    # the window bounds rise with the index, so a merged segment ends where its last run does
    opens = np.concatenate(([True], starts[1:] - ends[:-1] > pp.max_gap_s))
    head = np.flatnonzero(opens)
    tail = np.concatenate((head[1:] - 1, [len(starts) - 1]))
    starts, ends, firsts, lasts = starts[head], ends[tail], firsts[head], lasts[tail]
    keep = (ends > starts) & (ends - starts + 1e-9 >= pp.min_duration_s)
    return starts[keep], ends[keep], firsts[keep], lasts[keep]


def runs_to_segments(smoothed: np.ndarray, label: str, pp: PostProcessing, lo: np.ndarray,
                     hi: np.ndarray) -> list:
    """One label's already-smoothed scores [windows] → its segments: runs of windows at or
    above the threshold, dips at or above the low threshold bridged (`threshold_runs`),
    each widened by `extend_s` on both sides (a window longer than
    the hop is positive only once an event fills much of it, so runs sit inside their
    events), runs closer than `max_gap_s` merged, segments shorter than `min_duration_s`
    dropped. Split out (`threshold_runs`, `merge_runs`) so calibration can smooth and
    threshold once and try many settings."""
    starts, ends, firsts, lasts = merge_runs(
        *threshold_runs(smoothed, pp.threshold, pp.low_threshold), pp, lo, hi)
    out = []
    for start, end, first, last in zip(starts, ends, firsts, lasts):
        conf = float(smoothed[first:last + 1].max())  # a run holds a window >= threshold
        out.append(Segment(round(float(start), 3), round(float(end), 3), label, round(conf, 4)))
    return out


def to_segments(scores: np.ndarray, labels, post_processing, grid: WindowGrid,
                duration_s: float) -> list:
    """[windows, classes] scores → segments sorted by start, then label. `post_processing`
    holds one `PostProcessing` per label; a label whose entry is None is not written."""
    scores = np.asarray(scores, np.float64)
    lo, hi = window_bounds(len(scores), grid, duration_s)
    out = []
    for c, (label, pp) in enumerate(zip(labels, post_processing)):
        if pp is not None and len(scores):
            out += runs_to_segments(smooth(scores[:, c], pp.smoothing_windows), label, pp, lo, hi)
    return sorted(out)


def model_post_processing(meta: dict) -> dict:
    """label → (settings dict, where they came from) as a model card (`model.model_card`,
    as a dict) holds them: `model` (calibrated at train time), or for a background label or
    a model trained before calibration, `model` for the threshold and `default` for the rest."""
    calibrated = isinstance(meta.get("calibration"), dict)
    background = set(meta.get("background_labels", ()))
    out = {}
    for label in meta["labels"]:
        settings = PostProcessing.from_dict(meta["post_processing"][label]).to_dict()
        sources = dict.fromkeys(PostProcessing.FIELDS, "model")
        if not calibrated or label in background:
            sources = {**dict.fromkeys(PostProcessing.FIELDS, "default"), "threshold": "model"}
        out[label] = (settings, sources)
    return out


def written_labels(meta: dict, emit_background: bool = False) -> list:
    """The labels whose segments are written: all but the model's background labels,
    unless asked."""
    background = set(meta.get("background_labels", ()))
    return [l for l in meta["labels"] if emit_background or l not in background]
