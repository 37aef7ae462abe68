"""Event post-processing chosen at train time: per label, the threshold and low threshold
(hysteresis), smoothing, minimum duration and merge gap that maximize event F1 (IoU 0.5) on
validation recordings.

The validation recordings are the prepared data's validation split: annotated long
recordings as they are, or, for a clip corpus, one sequence per label set built by
concatenating the validation clips in a seeded order (each clip an event of its label;
back-to-back clips of one label make one event, as in a real night); there the low threshold
(hysteresis) is chosen on one more sequence whose events hold dips (`clip_sequence`). The
model scores them exactly as `earmark label` does (`model.windowing` windows at the model's
labeling hop), so what is chosen here is what `label` will do by default.

Folders of verdicts (`prepare --annotated-extent selections`) add what a person said about
the recordings they reviewed: each reviewed span is scored in its context (the stretch of
its recording around it), and counts as an event found when the segments cover
ITEM_COVERAGE of it (`yes`) and as a false alarm when they cover that much of a span that
holds no event (`no`); segments elsewhere in those stretches are not counted, as no one
said what is there.
"""
import dataclasses
import hashlib
import itertools
import random

import numpy as np

from earmark.model import audio, event_metrics
from earmark.model.events import Event
from earmark.model.segments import (PostProcessing, WindowGrid, merge_runs, smooth, threshold_runs,
                                    window_bounds)
from earmark.model.scoring import score_recording, score_windows
from earmark.model.window_labels import merged_spans
from earmark.model.windowing import count_windows, frame_windows

THRESHOLDS = tuple(np.round(np.arange(0.05, 0.951, 0.05), 2))
SMOOTHING_WINDOWS = (1, 3, 5)
MIN_DURATIONS_S = (0.0, 0.25, 0.5, 1.0)
MAX_GAPS_S = (0.0, 0.25, 0.5, 1.0)
EXTEND_WINDOW_FRACTIONS = (0.0, 1 / 6, 1 / 3, 1 / 2)  # segment widening, as part of a window
# the low threshold (hysteresis), as part of the threshold: 1 is none
LOW_THRESHOLD_FRACTIONS = (1.0, 0.75, 0.5, 0.25)
# settings whose F1 is within this of the best count as equally good, or within one event's
# worth (1 / the label's independent validation events) when that is more: a difference of
# less than one event is noise. Among them, first those that drop a segment one window makes
# alone (`needs_two_windows`), then the plainest (threshold nearest 0.5, which keeps a margin
# on both sides when recordings score a little higher or lower than the validation data; then
# the least smoothing, hysteresis, widening, minimum and gap)
F1_SLACK = 0.005
MAX_AUDIO_S = 3 * 3600.0  # validation audio scored at most (recordings drawn by a seeded hash)
MIN_IOU = 0.5
# a clip corpus' sequences join about one event clip in CLIP_DIP_EVERY to another of its label
# across a quiet stretch (background audio at DIP_GAIN) of DIP_WINDOW_FRACTIONS of a window
# (a shorter one leaves no mark on the window scores): one event with a dip inside, as on
# long recordings, where the scores dip inside an event and split it in two
CLIP_DIP_EVERY = 2
CLIP_DIP_ORDERINGS = 1
DIP_WINDOW_FRACTIONS = (0.1, 0.3)
DIP_GAIN = 0.1
# the deepest low threshold that costs no event is taken only where the sequences with dips
# hold at least this many events of the label: fewer cannot show a cost of one event in ten
# (a review loop's clip folder holds one or two), and there the shallowest stays
MIN_DIP_EVENTS = 10
# a clip corpus is calibrated on this many sequences, each its validation clips in another
# seeded order: one order alone is a small, lucky or unlucky sample (measured on the demo:
# snore event F1 on the night 0.45, 0.92 or 1.0 by the order of one sequence)
CLIP_ORDERINGS = 3
# a reviewed span is scored in the stretch of its recording from this long before it to this
# long after it (overlapping stretches joined): smoothing, merging and the minimum duration
# see the neighbouring windows as `label` does
REVIEWED_CONTEXT_S = 5.0
# a reviewed span counts as detected when segments of its label cover this part of it (the
# part a reviewer hears)
ITEM_COVERAGE = 0.5


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One validation recording: its waveform at the model's rate and its true events; or
    (`reviewed`) a stretch of a partly annotated recording, its `events` and `negatives`
    ((start_s, end_s, label) spans holding no event of `label`, None: of any) the spans a
    person reviewed."""
    name: str
    waveform: np.ndarray
    events: tuple
    negatives: tuple = ()
    reviewed: bool = False


@dataclasses.dataclass(frozen=True)
class Choice:
    post_processing: PostProcessing
    f1: float
    precision: float
    recall: float
    truth_events: int
    predicted_events: int
    reviewed_events: int = 0   # of truth_events, the reviewed spans (`yes` verdicts)

    def to_dict(self) -> dict:
        return {"event_f1_iou_0.5": round(self.f1, 4), "precision": round(self.precision, 4),
                "recall": round(self.recall, 4), "truth_events": self.truth_events,
                "predicted_events": self.predicted_events,
                **({"reviewed_events": self.reviewed_events} if self.reviewed_events else {})}


def read_audio(source: str, rate_hz: int, quality: str, read_bytes) -> np.ndarray:
    """A recording's mono waveform at `rate_hz` (`read_bytes(path)` gives its bytes)."""
    waveform, _, _ = audio.load_waveform(read_bytes(source), rate_hz, source, quality)
    return waveform


def recording_sequences(recordings, rate_hz: int, quality: str, read_bytes) -> list:
    """Annotated validation recordings, or stretches of them (`model.data.RecordingEvents`)
    → Sequences, at most MAX_AUDIO_S of audio (drawn by a seeded hash); each recording
    decoded once, whatever the stretches it gives."""
    chosen, total = [], 0.0
    for r in sorted(recordings, key=lambda r: _draw_order(r.name)):
        if total + r.duration_s > MAX_AUDIO_S and chosen:
            break
        chosen.append(r)
        total += r.duration_s
    out = []
    by_source = sorted(chosen, key=lambda r: (r.source, r.offset_s))
    for source, stretches in itertools.groupby(by_source, key=lambda r: r.source):
        waveform = read_audio(source, rate_hz, quality, read_bytes)
        for r in stretches:
            if r.whole:
                out.append(Sequence(r.name, waveform, r.events))
                continue
            first = int(round(r.offset_s * rate_hz))
            piece = waveform[first:first + int(round(r.duration_s * rate_hz))].copy()
            out.append(Sequence(r.name, piece, r.events))
    return sorted(out, key=lambda s: s.name)


def reviewed_sequences(reviewed, rate_hz: int, quality: str, read_bytes) -> list:
    """Partly annotated recordings (`data.ReviewedRecording`) → reviewed Sequences: the
    stretches of each recording around its reviewed spans (REVIEWED_CONTEXT_S each side,
    overlapping stretches joined), spans in seconds from the stretch's start; at most
    MAX_AUDIO_S of audio (recordings drawn by a seeded hash), each recording decoded once."""
    out, total = [], 0.0
    for r in sorted(reviewed, key=lambda r: _draw_order(r.key)):
        spans = [(e.start_s, e.end_s) for e in r.events] + [n[:2] for n in r.negatives]
        stretches = merged_spans((max(a - REVIEWED_CONTEXT_S, 0.0),
                                  min(b + REVIEWED_CONTEXT_S, r.duration_s)) for a, b in spans)
        length = sum(b - a for a, b in stretches)
        if total + length > MAX_AUDIO_S and out:
            break
        total += length
        waveform = read_audio(r.source, rate_hz, quality, read_bytes)
        for a, b in stretches:
            def inside(start, end):
                return a - 1e-6 <= start and end <= b + 1e-6
            out.append(Sequence(
                f"{r.key}@{a:g}-{b:g}",
                waveform[int(round(a * rate_hz)):int(round(b * rate_hz))].copy(),
                tuple(Event(e.start_s - a, e.end_s - a, e.label) for e in r.events
                      if inside(e.start_s, e.end_s)),
                tuple((s - a, e - a, label) for s, e, label in r.negatives if inside(s, e)),
                reviewed=True))
    return sorted(out, key=lambda s: s.name)


def _draw_order(key: str) -> str:
    return hashlib.sha256(("earmark-calibration:" + key).encode()).hexdigest()


def clip_sequence(clips, rate_hz: int, quality: str, read_bytes, background_labels=(),
                  seed: int = 0, decoded: dict = None, dip_every: int = 0,
                  dip_s: tuple = (0.0, 0.0)) -> Sequence:
    """Validation clips (`RecordingEvents` with one event each) → one Sequence, in a seeded
    order, that sounds like a recording: each clip of an event label is followed by one to
    three clips of the background labels (`not_snore`, `background`: the corpus' own
    negative audio, reused in turn when there are few), as events sit between quieter
    stretches in a night; consecutive clips of one label form one event. Without background
    labels the event clips follow each other directly. About one event clip in `dip_every`
    (0: none) is joined to another clip of its label across a quiet stretch of `dip_s`
    (min, max) seconds, as one event (`_dips`). `decoded` (source → waveform) keeps each
    clip decoded once across orders and reuses."""
    decoded = {} if decoded is None else decoded
    rng = random.Random(seed)
    clips = sorted(clips, key=lambda r: r.key)
    events_first = [c for c in clips if c.events[0].label not in background_labels]
    gaps = [c for c in clips if c.events[0].label in background_labels]
    rng.shuffle(events_first)
    rng.shuffle(gaps)
    order, g = [], 0
    for clip in events_first or gaps:
        order.append((clip, None))
        for _ in range(rng.randint(1, 3) if gaps and events_first else 0):
            order.append((gaps[g % len(gaps)], None))
            g += 1
    if dip_every and events_first:
        order = _dips(order, events_first, gaps, dip_every, dip_s, seed)

    def wave_of(clip):
        if clip.source not in decoded:
            decoded[clip.source] = read_audio(clip.source, rate_hz, quality, read_bytes)
        return decoded[clip.source]
    pieces, events, offset = [], [], 0.0
    for clip, dip in order:
        if offset > MAX_AUDIO_S and pieces:
            break
        if dip is not None:   # a quiet stretch inside the event before: it goes on after
            quiet_s, quiet = dip
            n = int(round(quiet_s * rate_hz))
            stretch = np.zeros(n, np.float32)
            if quiet is not None:
                piece = wave_of(quiet)[:n]
                stretch[:len(piece)] = piece * DIP_GAIN
            pieces.append(stretch)
            offset += n / rate_hz
        wave = wave_of(clip)
        duration = len(wave) / rate_hz
        label = clip.events[0].label
        if dip is not None or (events and events[-1].label == label
                               and abs(events[-1].end_s - offset) < 1e-6):
            events[-1] = Event(events[-1].start_s, offset + duration, label)
        else:
            events.append(Event(offset, offset + duration, label))
        pieces.append(wave)
        offset += duration
    waveform = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return Sequence(f"validation clips, concatenated (order {seed})", waveform, tuple(events))


def _dips(order: list, events_first: list, gaps: list, dip_every: int, dip_s: tuple,
          seed: int) -> list:
    """`order` ((clip, None) pairs) with, after about one event clip in `dip_every`, another
    clip of its label as (clip, (seconds of a quiet stretch before it, background clip
    whose start, at DIP_GAIN, fills the stretch, or None: silence)). Drawn with their own
    seeded generator, so the order of the clips is the one without dips."""
    rng = random.Random(f"earmark-calibration-dips:{seed}")
    by_label = {}
    for c in events_first:
        by_label.setdefault(c.events[0].label, []).append(c)
    events = {id(c) for c in events_first}
    out = []
    for clip, dip in order:
        out.append((clip, dip))
        if id(clip) in events and rng.randrange(dip_every) == 0:
            partner = rng.choice(by_label[clip.events[0].label])
            quiet = rng.choice(gaps) if gaps else None
            out.append((partner, (rng.uniform(*dip_s), quiet)))
    return out


def score_sequences(sequences, predict, window_samples: int, hop_samples: list) -> dict:
    """→ {hop: [windows, labels] scores per sequence} on the labeling windows of each hop
    (samples). A hop that is a multiple of the finest one reuses the finest hop's scores of
    the windows it shares (every r-th; only a zero-padded last window may be new): the model
    runs once over the audio, not once per hop."""
    finest = min(hop_samples)
    out = {h: [] for h in hop_samples}
    for s in sequences:
        fine = score_recording(predict, s.waveform, window_samples, finest)
        for h in hop_samples:
            if h % finest:
                out[h].append(score_recording(predict, s.waveform, window_samples, h))
                continue
            n = count_windows(len(s.waveform), window_samples, h)
            shared = fine[::h // finest][:n]
            if len(shared) < n:
                tail = frame_windows(s.waveform, window_samples, h)[len(shared):]
                shared = np.concatenate([shared, score_windows(predict, tail)])
            out[h].append(shared)
    return out


def choose(scores, sequences, labels, skip_labels, grid: WindowGrid, rate_hz: int,
           repeats: int = 1, low_fractions=LOW_THRESHOLD_FRACTIONS) -> dict:
    """→ {label: Choice} for every label not in `skip_labels` (background labels).
    `repeats`: how many times each event occurs across `sequences` (clips in several orders);
    `low_fractions`: the low thresholds tried, as parts of the threshold ((1.0,): none)."""
    extends = [round(f * grid.window_s, 3) for f in EXTEND_WINDOW_FRACTIONS]
    return {label: _best_for_label(label, columns, truth, bounds, extends, slack, grid.hop_s,
                                   low_fractions)
            for label, columns, truth, bounds, slack
            in _per_label(scores, sequences, labels, skip_labels, grid, rate_hz, repeats)}


def choose_low_thresholds(chosen: dict, scores, sequences, labels, grid: WindowGrid,
                          rate_hz: int, repeats: int = 1, kept_on=None) -> dict:
    """{label: Choice} → {label: PostProcessing}: each label's settings with the low
    threshold chosen on `sequences` (clips joined across dips, `clip_sequence`), the others
    kept: of LOW_THRESHOLD_FRACTIONS of its threshold, the deepest whose event F1 there is
    within the slack (`choose`) of the best and, with `kept_on` ((scores, sequences,
    repeats) the Choices were made on), whose event F1 there stays within the label's slack
    of its Choice's; none (the threshold) when no low threshold does. A low threshold that
    costs events on either (neighbours joined, a false alarm lengthened) is not taken;
    where it costs none, the dip is bridged, as events on long recordings hold dips that
    clips do not show (measured on the held-out nights: docs/benchmarks.md). Where the
    sequences hold fewer than MIN_DIP_EVENTS events of the label, the shallowest within
    the slack instead: they cannot show what bridging costs (measured on the review loop)."""
    kept = {} if kept_on is None else {
        label: (columns, truth, bounds, slack) for label, columns, truth, bounds, slack
        in _per_label(*kept_on[:2], labels, set(labels) - set(chosen), grid, rate_hz,
                      kept_on[2])}

    def keeps(pp: PostProcessing, label: str) -> bool:
        if label not in kept:
            return True
        columns, truth, bounds, slack = kept[label]
        f1 = event_metrics.f1(*_counts(pp, columns, truth, bounds))[2]
        return f1 >= chosen[label].f1 - slack

    out = {}
    for label, columns, truth, bounds, slack in _per_label(
            scores, sequences, labels, set(labels) - set(chosen), grid, rate_hz, repeats):
        pp = chosen[label].post_processing
        fractions = sorted(LOW_THRESHOLD_FRACTIONS, reverse=truth.n_events < MIN_DIP_EVENTS)
        tried = [dataclasses.replace(pp, low_threshold=round(pp.threshold * f, 3))
                 for f in fractions]
        f1s = [event_metrics.f1(*_counts(p, columns, truth, bounds))[2] for p in tried]
        out[label] = next((p for p, f1 in zip(tried, f1s)
                           if f1 >= max(f1s) - slack and keeps(p, label)), pp)
    return out


def rescored(pp: PostProcessing, label: str, scores, sequences, labels, grid: WindowGrid,
             rate_hz: int) -> Choice:
    """The Choice of settings `pp` for `label`, its figures measured on `sequences`
    (`labels`: the model's, in the order of the score columns)."""
    (_, columns, truth, bounds, _), = _per_label(scores, sequences, labels, set(labels) - {label},
                                                grid, rate_hz, 1)
    tp, n_truth, n_pred = _counts(pp, columns, truth, bounds)
    precision, recall, f1 = event_metrics.f1(tp, n_truth, n_pred)
    return Choice(pp, f1, precision, recall, n_truth, n_pred, truth.reviewed_events)


@dataclasses.dataclass(frozen=True)
class _LabelTruth:
    """One label's truth over the sequences: per sequence, its events' (starts, ends) and,
    for a reviewed sequence, its negative spans' (starts, ends) (None for a fully annotated
    one)."""
    events: list
    negatives: list

    @property
    def n_events(self) -> int:
        return sum(len(starts) for starts, _ in self.events)

    @property
    def reviewed_events(self) -> int:
        return sum(len(e[0]) for e, n in zip(self.events, self.negatives) if n is not None)

    def counted(self, k: int, starts: np.ndarray, ends: np.ndarray) -> tuple:
        """(true positives, segments counted) of segments [starts, ends] on sequence k: on a
        fully annotated one its events matched one to one at MIN_IOU, and every segment; on
        a reviewed one the reviewed spans the segments cover (ITEM_COVERAGE): events found,
        and those plus negatives covered (a false alarm only where a person said no)."""
        if self.negatives[k] is None:
            return event_metrics.matched_count(*self.events[k], starts, ends, MIN_IOU), \
                len(starts)
        found = _covered(*self.events[k], starts, ends)
        return found, found + _covered(*self.negatives[k], starts, ends)


def _covered(span_starts, span_ends, starts, ends) -> int:
    """How many spans segments [starts, ends] (disjoint) cover by at least ITEM_COVERAGE (a
    span of no length: one a segment holds)."""
    if not len(span_starts) or not len(starts):
        return 0
    overlap = np.clip(np.minimum(span_ends[:, None], ends[None, :])
                      - np.maximum(span_starts[:, None], starts[None, :]), 0.0, None).sum(1)
    length = span_ends - span_starts
    held = ((starts[None, :] <= span_starts[:, None])
            & (span_ends[:, None] <= ends[None, :])).any(1)
    return int(np.where(length > 0, overlap + 1e-9 >= ITEM_COVERAGE * length, held).sum())


def _times(spans) -> tuple:
    return (np.array([s for s, _ in spans], np.float64), np.array([e for _, e in spans],
                                                                   np.float64))


def _per_label(scores, sequences, labels, skip_labels, grid, rate_hz, repeats):
    """(label, its score column per sequence, its `_LabelTruth`, window bounds per sequence,
    F1 slack) for every label not skipped. `repeats`: how many times each event of the
    sequences that are not reviewed occurs across them."""
    durations = [len(s.waveform) / rate_hz for s in sequences]
    bounds = [window_bounds(len(sc), grid, d) for sc, d in zip(scores, durations)]
    for c, label in enumerate(labels):
        if label in skip_labels:
            continue
        # a `no` on another label's item says nothing of this one's events there
        negatives = [_times([n[:2] for n in s.negatives if _rules_out(n, label)])
                     if s.reviewed else None for s in sequences]
        truth = _LabelTruth([_times([(e.start_s, e.end_s) for e in s.events if e.label == label])
                             for s in sequences], negatives)
        independent = truth.reviewed_events + (truth.n_events - truth.reviewed_events) / repeats
        slack = max(F1_SLACK, 1.0 / independent) if independent else F1_SLACK
        yield label, [sc[:, c] for sc in scores], truth, bounds, slack


def _rules_out(negative, label: str) -> bool:
    """Whether a reviewed negative span ((start_s, end_s[, label or None])) says `label`'s
    events are absent there: one naming no label, or this one."""
    return len(negative) < 3 or negative[2] in (None, label)


def _counts(pp: PostProcessing, columns, truth: _LabelTruth, bounds) -> tuple:
    """(true positives, true events, segments counted) of settings `pp` over the sequences."""
    tp = n_pred = 0
    for k, (col, (lo, hi)) in enumerate(zip(columns, bounds)):
        sm = smooth(col.astype(np.float64), pp.smoothing_windows)
        starts, ends, _, _ = merge_runs(*threshold_runs(sm, pp.threshold, pp.low_threshold),
                                        pp, lo, hi)
        found, counted = truth.counted(k, _rounded_ms(starts), _rounded_ms(ends))
        tp += found
        n_pred += counted
    return tp, truth.n_events, n_pred


def _best_for_label(label, columns, truth: _LabelTruth, bounds, extends, slack, hop_s: float,
                    low_fractions=LOW_THRESHOLD_FRACTIONS) -> Choice:
    n_truth = truth.n_events
    matched = [{} for _ in columns]   # per sequence: segments → (matched, counted)
    # per sequence and widening: the start and end `runs_to_segments` writes for a segment
    # from each window (`merge_runs`' arithmetic, rounded to the millisecond), rounded once
    times = [{e: (_rounded_ms(np.maximum(lo - e, 0.0)),
                  _rounded_ms(np.minimum(hi + e, float(hi[-1]) if len(hi) else 0.0)))
              for e in extends} for lo, hi in bounds]

    def counted(k, extend, firsts, lasts):
        key = (extend, firsts.tobytes(), lasts.tobytes())  # settings often give the same segments
        if key not in matched[k]:
            starts, ends = times[k][extend]
            matched[k][key] = truth.counted(k, starts[firsts], ends[lasts])
        return matched[k][key]

    tried = []
    for width in SMOOTHING_WINDOWS:
        smoothed = [smooth(col.astype(np.float64), width) for col in columns]
        for threshold in THRESHOLDS:
            for runs, low in _hysteresis_runs(smoothed, float(threshold), low_fractions):
                for max_gap, extend in itertools.product(MAX_GAPS_S, extends):
                    # merged once; each minimum duration then drops what `merge_runs` would
                    merged = [merge_runs(firsts, lasts, PostProcessing(
                        max_gap_s=max_gap, extend_s=extend), lo, hi)
                        for (firsts, lasts), (lo, hi) in zip(runs, bounds)]
                    for min_duration in MIN_DURATIONS_S:
                        tp = n_pred = 0
                        for k, (starts, ends, firsts, lasts) in enumerate(merged):
                            keep = ends - starts + 1e-9 >= min_duration
                            found, n = counted(k, extend, firsts[keep], lasts[keep])
                            tp += found
                            n_pred += n
                        tried.append((PostProcessing(float(threshold), width, min_duration,
                                                     max_gap, extend, low), tp, n_pred))
    scored = [(event_metrics.f1(tp, n_truth, n_pred), pp, n_pred) for pp, tp, n_pred in tried]
    best = max(f for (_, _, f), _, _ in scored)
    plain = min((s for s in scored if s[0][2] >= best - slack),
                key=lambda s: (not needs_two_windows(s[1], hop_s), _plainness(s[1])))
    (precision, recall, f1), pp, n_pred = plain
    return Choice(pp, f1, precision, recall, n_truth, n_pred, truth.reviewed_events)


def needs_two_windows(pp: PostProcessing, hop_s: float) -> bool:
    """Whether settings `pp` drop a segment that one window above the threshold makes alone
    (windows every `hop_s` seconds): their minimum duration is longer than the hop, widened
    on both sides. A lone window was the commonest false alarm of the review loop's models,
    and the audio calibration chooses on shows few of them: a folder of verdicts counts a
    false alarm only where a person said no, which is where earlier models erred, not where
    this one will. Among settings that validate equally well these come first (measured on
    the review loop and the held-out nights: docs/benchmarks.md). Smoothing is not counted:
    it also dilutes events two windows long, which the verdicts (on what earlier models
    found) show few of."""
    return pp.min_duration_s > hop_s + 2 * pp.extend_s + 1e-9


def _plainness(pp: PostProcessing) -> tuple:
    """The order in which equally good settings are preferred (the least first), after
    `needs_two_windows`."""
    return (abs(pp.threshold - 0.5), pp.smoothing_windows, pp.threshold - pp.low_threshold,
            pp.extend_s, pp.min_duration_s, pp.max_gap_s)


def mean_event_f1(calibration: dict) -> tuple:
    """(mean event F1 over the labels calibrated, or None when nothing was; the F1 difference
    that is less than one event's worth: `F1_SLACK` or 1 / the independent validation
    events, when that is more) of a model.json `calibration`."""
    per_label = calibration.get("per_label") or {}
    if not per_label:
        return None, F1_SLACK
    events = sum((c["truth_events"] - c.get("reviewed_events", 0)) / calibration.get("orders", 1)
                 + c.get("reviewed_events", 0) for c in per_label.values())
    return (float(np.mean([c["event_f1_iou_0.5"] for c in per_label.values()])),
            max(F1_SLACK, 1.0 / events) if events else F1_SLACK)


def _rounded_ms(seconds: np.ndarray) -> np.ndarray:
    """Python's round(x, 3) of each (numpy's rounding differs at some ties)."""
    return np.array([round(float(x), 3) for x in seconds])


def _hysteresis_runs(smoothed: list, threshold: float, low_fractions):
    """→ (runs per sequence, low threshold) for each of `low_fractions` of `threshold`,
    skipping a low threshold whose runs equal the previous (higher) one's: the same
    segments, and a deeper hysteresis is never the plainer choice."""
    previous = None
    for fraction in low_fractions:
        low = round(threshold * fraction, 3)
        runs = [threshold_runs(sm, threshold, low) for sm in smoothed]
        if previous is None or any(len(a) != len(b) or (a != b).any()
                                   for r, p in zip(runs, previous) for a, b in zip(r, p)):
            yield runs, low
        previous = runs


def _sequences(prepared, split_recordings, read_bytes, reviewed=(), decoded: dict = None) -> tuple:
    """The audio `calibrate` chooses settings on (without the clips joined across dips) →
    (Sequences, what they are in words, model.json `calibration.reviewed` or {}): the
    annotated recordings (or stretches) of the split, or its clips in CLIP_ORDERINGS
    orders, then the reviewed spans in their context. `decoded`: `clip_sequence`'s."""
    config = prepared.feature_config
    rate, quality = config.sample_rate_hz, config.resample_quality
    split, recordings = split_recordings
    sequences, what = [], "no validation recordings"
    if prepared.annotated and recordings:
        sequences = recording_sequences(recordings, rate, quality, read_bytes)
        what = f"{len(sequences)} annotated {split} recordings"
        if not all(r.whole for r in recordings):   # prepared --split-by time
            what = (f"{len(sequences)} {split} stretches of "
                    f"{len({r.key for r in recordings})} annotated recordings")
    if not prepared.annotated and recordings:
        decoded = {} if decoded is None else decoded  # a clip decoded once, whatever the orders
        sequences = [clip_sequence(recordings, rate, quality, read_bytes,
                                   set(prepared.background_labels), seed, decoded)
                     for seed in range(CLIP_ORDERINGS)]
        what = f"{split} clips concatenated, in {CLIP_ORDERINGS} orders"
    reviewed_info = {}
    if reviewed:
        stretches = reviewed_sequences(reviewed, rate, quality, read_bytes)
        n_yes = sum(len(s.events) for s in stretches)
        n_no = sum(len(s.negatives) for s in stretches)
        sequences = sequences + stretches
        n_recordings = len({s.name.rsplit("@", 1)[0] for s in stretches})
        what += (f", and {n_yes + n_no} reviewed spans ({n_yes} with an event) in "
                 f"{len(stretches)} stretches of {n_recordings} partly annotated recordings")
        reviewed_info = {"reviewed": {"spans": n_yes + n_no, "with_event": n_yes,
                                      "stretches": len(stretches),
                                      "context_s": REVIEWED_CONTEXT_S,
                                      "coverage": ITEM_COVERAGE}}
    return sequences, what, reviewed_info


def event_f1_at(prepared, split_recordings, predict, hop_s: float, post_processing: dict,
                read_bytes, reviewed=()) -> float | None:
    """The mean event F1, over the labels of `post_processing` ({label: model.json
    settings}), of those settings on the audio `calibrate` chose them on (`_sequences`),
    windows every `hop_s` scored by `predict`; None with no audio or no label. How a
    model's 8-bit file is checked against its float scores (`earmark train`, image bases)."""
    sequences = _sequences(prepared, split_recordings, read_bytes, reviewed)[0]
    if not sequences or not post_processing:
        return None
    config = prepared.feature_config.with_patch_hop(hop_s)
    hop = config.patch_hop_samples
    scores = score_sequences(sequences, predict, config.patch_samples, [hop])[hop]
    grid = WindowGrid(config.patch_hop_seconds, config.patch_samples / config.sample_rate_hz)
    return float(np.mean([
        rescored(PostProcessing.from_dict(pp), label, scores, sequences, list(prepared.labels),
                 grid, config.sample_rate_hz).f1 for label, pp in post_processing.items()]))


def calibrate(prepared, split_recordings, predict, hops_s, read_bytes, log=print,
              reviewed=()) -> dict:
    """The whole train-time step → model.json entries: `post_processing` (label → settings,
    background labels left out), `background_labels`, `calibration` (what was measured) and
    `labeling_hop_s`, the hop of `hops_s` (seconds) whose events scored best (the coarsest
    within F1_SLACK: the cheapest to label). `split_recordings`: (split name,
    `RecordingEvents`) of the validation split, or of the training split when there is no
    validation split; `reviewed`: `data.ReviewedRecording`s of the folders of verdicts."""
    config = prepared.feature_config
    rate = config.sample_rate_hz
    split, recordings = split_recordings
    labels, background = list(prepared.labels), set(prepared.background_labels)
    if not recordings and not reviewed:
        return {"post_processing": {l: PostProcessing().to_dict() for l in labels
                                    if l not in background},
                "background_labels": sorted(background), "labeling_hop_s": hops_s[0],
                "calibration": {"source": "none: the prepared data has no recordings.jsonl "
                                          "(re-run earmark prepare); defaults used"}}
    decoded = {}   # the clips' waveforms, for the orders with and without dips
    sequences, what, reviewed_info = _sequences(prepared, split_recordings, read_bytes,
                                                reviewed, decoded)
    dipped, low_on = [], {}   # a clip corpus: its low thresholds are chosen on clips with dips
    if not prepared.annotated and recordings:
        dip_s = tuple(f * config.patch_samples / rate for f in DIP_WINDOW_FRACTIONS)
        dipped = [clip_sequence(recordings, rate, config.resample_quality, read_bytes,
                                background, seed, decoded, CLIP_DIP_EVERY, dip_s)
                  for seed in range(CLIP_DIP_ORDERINGS)]
        low_on = {"low_thresholds_on": (
            f"the {split} clips in {CLIP_DIP_ORDERINGS} of those orders, about one event clip "
            f"in {CLIP_DIP_EVERY} joined to another of its label across {dip_s[0]:.2f}-"
            f"{dip_s[1]:.2f} s of quiet (one event with a dip inside): the deepest that "
            "costs no event there nor on the orders without dips, where the other settings "
            "were chosen without hysteresis")}
    repeats = 1 if prepared.annotated else CLIP_ORDERINGS
    audio_s = sum(len(s.waveform) for s in sequences + dipped) / rate
    log(f"calibrating event post-processing on {what} ({audio_s:.0f} s of audio)")
    by_hop = []
    scored = score_sequences(sequences + dipped, predict, config.patch_samples,
                             [config.with_patch_hop(h).patch_hop_samples for h in hops_s])
    for hop_s in hops_s:
        label_config = config.with_patch_hop(hop_s)
        scores = scored[label_config.patch_hop_samples][:len(sequences)]
        grid = WindowGrid(label_config.patch_hop_seconds, label_config.patch_samples / rate)
        chosen = choose(scores, sequences, labels, background, grid, rate, repeats,
                        (1.0,) if dipped else LOW_THRESHOLD_FRACTIONS)
        if dipped:
            lows = choose_low_thresholds(
                chosen, scored[label_config.patch_hop_samples][len(sequences):], dipped,
                labels, grid, rate, len(dipped), kept_on=(scores, sequences, repeats))
            chosen = {l: c if lows[l] == c.post_processing else
                      rescored(lows[l], l, scores, sequences, labels, grid, rate)
                      for l, c in chosen.items()}
        mean_f1 = float(np.mean([c.f1 for c in chosen.values()])) if chosen else 0.0
        by_hop.append((mean_f1, hop_s, grid, chosen))
        if len(hops_s) > 1:
            log(f"  labeling hop {hop_s:g} s: mean event F1 {mean_f1:.3f}")
    best = max(f for f, _, _, _ in by_hop)
    _, hop_s, grid, chosen = max((h for h in by_hop if h[0] >= best - F1_SLACK),
                                 key=lambda h: h[1])
    for label, c in chosen.items():
        pp = c.post_processing
        log(f"  {label}: threshold {pp.threshold:g} (low {pp.low_threshold:g}), smoothing "
            f"{pp.smoothing_windows}, min duration {pp.min_duration_s:g} s, max gap "
            f"{pp.max_gap_s:g} s -> event F1 "
            f"{c.f1:.3f} (P {c.precision:.3f}, R {c.recall:.3f}, {c.truth_events} events)")
    return {"post_processing": {l: c.post_processing.to_dict() for l, c in chosen.items()},
            "background_labels": sorted(background), "labeling_hop_s": hop_s,
            "calibration": {"source": what, "split": split, "audio_s": round(audio_s, 2),
                            "hop_s": grid.hop_s, "hops_tried_s": list(hops_s),
                            "mean_event_f1_per_hop": {f"{h:g}": round(f, 4)
                                                      for f, h, _, _ in by_hop},
                            "min_iou": MIN_IOU, "orders": repeats, **low_on, **reviewed_info,
                            "per_label": {l: c.to_dict() for l, c in chosen.items()}}}
