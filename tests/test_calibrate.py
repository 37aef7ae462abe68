"""Calibration's fast paths give what `earmark label` would: the grid search's segment times
and matches equal `runs_to_segments` + `event_f1`, and scores shared across hops equal
scoring each hop's windows. The low threshold (hysteresis) is chosen where events hold dips,
clip sequences can be given such events, and settings that drop a segment one window makes
alone are preferred where they validate as well."""
import dataclasses

import numpy as np
import pytest
import soundfile as sf

from earmark.model import calibrate, event_metrics
from earmark.model.data import RecordingEvents
from earmark.model.events import Event
from earmark.model.segments import (PostProcessing, WindowGrid, merge_runs, runs_to_segments,
                                    smooth, threshold_runs, window_bounds)
from earmark.model.windowing import frame_windows


def _night(rng, hop_s, duration_s):
    """Noisy scores [windows] with bumps over random events, and those events."""
    n = int(duration_s / hop_s)
    scores, events, t = rng.uniform(0, 0.4, n), [], rng.uniform(0, 5)
    while t < duration_s - 5:
        d = rng.uniform(0.5, 4)
        events.append(Event(round(t, 3), round(t + d, 3), "x"))
        scores[int(t / hop_s):int((t + d) / hop_s) + 1] += rng.uniform(0.2, 0.7)
        t += d + rng.uniform(1, 20)
    return np.clip(scores + rng.normal(0, 0.1, n), 0, 1), events


@pytest.mark.parametrize("hop_s,window_s", [(0.48, 0.975), (1.5, 3.0), (0.75, 3.0)])
def test_grid_search_segments_and_matches_equal_label_s(hop_s, window_s):
    rng = np.random.default_rng(int(hop_s * 100))
    grid = WindowGrid(hop_s, window_s)
    for _ in range(3):
        scores, truth = _night(rng, hop_s, rng.uniform(60, 200))
        lo, hi = window_bounds(len(scores), grid, len(scores) * hop_s + 0.3)
        t_start, t_end = (np.array([getattr(e, a) for e in truth]) for a in ("start_s", "end_s"))
        for pp in (PostProcessing(0.5), PostProcessing(0.3, 3, 0.5, 1.0, window_s / 3),
                   PostProcessing(0.7, 5, 1.0, 0.25, 0.0), PostProcessing(0.05, 1, 0, 0.5, 0.5),
                   PostProcessing(0.6, 1, 0.5, 0.0, window_s / 6, low_threshold=0.3),
                   PostProcessing(0.8, 3, 0.0, 0.25, 0.0, low_threshold=0.2)):
            sm = smooth(scores, pp.smoothing_windows)
            segments = runs_to_segments(sm, "x", pp, lo, hi)
            starts, ends, _, _ = merge_runs(*threshold_runs(sm, pp.threshold, pp.low_threshold),
                                            pp, lo, hi)
            rounded = [(round(float(a), 3), round(float(b), 3)) for a, b in zip(starts, ends)]
            assert [(s.start_s, s.end_s) for s in segments] == rounded
            found = [Event(s.start_s, s.end_s, "x") for s in segments]
            p_start, p_end = (np.array([r[i] for r in rounded]) for i in (0, 1))
            assert event_metrics.matched_count(t_start, t_end, p_start, p_end) == \
                event_metrics.event_f1(truth, found)[0] == len(event_metrics.match_iou(truth, found))


RATE = 10   # samples per second of the stand-in waveforms: only their length matters here
GRID = WindowGrid(hop_s=0.5, window_s=1.0)


def _events_night(dips: bool, seed: int = 0, near_gap: float = 0.02, events: int = 40):
    """(Sequence, scores [windows, 1]): `events` events of 9 windows scoring 0.9, each with a
    one-window dip to 0.35 in the middle when `dips`, apart by one window (`near_gap`) or by
    ten (0.05)."""
    rng = np.random.default_rng(seed)
    scores, spans = [], []
    for _ in range(events):
        gap = [near_gap] if rng.random() < 0.5 else [0.05] * 10
        scores += gap
        spans.append((len(scores), len(scores) + 8))
        scores += [0.9] * 4 + [0.35 if dips else 0.9] + [0.9] * 4
    scores += [0.05] * 10
    duration_s = len(scores) * GRID.hop_s + GRID.window_s / 2
    lo, hi = window_bounds(len(scores), GRID, duration_s)
    events = tuple(Event(float(lo[a]), float(hi[b]), "x") for a, b in spans)
    sequence = calibrate.Sequence("night", np.zeros(int(duration_s * RATE), np.float32), events)
    return sequence, np.array(scores)[:, None]


@pytest.mark.parametrize("dips", [True, False])
def test_calibration_chooses_hysteresis_where_events_hold_dips_and_none_elsewhere(dips):
    """A dip inside events (0.35) stays above the scores between events (0.02, one window,
    as short as the dip): only a low threshold between them keeps every event whole without
    merging neighbours; smoothing or a merge gap would join neighbours too."""
    sequence, scores = _events_night(dips)
    choice = calibrate.choose([scores], [sequence], ["x"], (), GRID, RATE)["x"]
    pp = choice.post_processing
    assert choice.f1 == 1.0
    assert (0.35 >= pp.low_threshold > 0.02 and pp.low_threshold < pp.threshold) if dips \
        else pp.low_threshold == pp.threshold
    assert (pp.smoothing_windows, pp.max_gap_s) == (1, 0.0)
    # without hysteresis, events stay whole only with a threshold under the dip
    without = calibrate.choose([scores], [sequence], ["x"], (), GRID, RATE, low_fractions=(1.0,))
    assert without["x"].post_processing.low_threshold == without["x"].post_processing.threshold
    assert (without["x"].post_processing.threshold <= 0.35) == dips


def test_low_thresholds_chosen_on_sequences_with_dips_keep_the_other_settings():
    plain, plain_scores = _events_night(False)
    chosen = calibrate.choose([plain_scores], [plain], ["x"], (), GRID, RATE, low_fractions=(1.0,))
    dipped, dipped_scores = _events_night(True, seed=1)
    low = calibrate.choose_low_thresholds(chosen, [dipped_scores], [dipped], ["x"], GRID, RATE)
    pp = chosen["x"].post_processing
    assert low["x"] == dataclasses.replace(pp, low_threshold=low["x"].low_threshold)
    assert 0.35 >= low["x"].low_threshold > 0.02
    # where the sequences hold no dips, every low threshold is as good: the deepest is taken
    deepest = round(pp.threshold * min(calibrate.LOW_THRESHOLD_FRACTIONS), 3)
    no_dips = calibrate.choose_low_thresholds(chosen, [plain_scores], [plain], ["x"], GRID, RATE)
    assert no_dips["x"] == dataclasses.replace(pp, low_threshold=deepest)
    again = calibrate.rescored(low["x"], "x", [plain_scores], [plain], ["x"], GRID, RATE)
    assert (again.f1, again.post_processing) == (1.0, low["x"])


def test_a_low_threshold_that_costs_events_where_the_settings_were_chosen_is_not_taken():
    """The sequence with dips allows the deepest low threshold (0.125 at threshold 0.5: its
    neighbours one window apart score 0.02); on the sequence the other settings were chosen
    on they score 0.2, so 0.125 would join them there: 0.25, which bridges every dip and
    joins none, is taken instead."""
    plain, plain_scores = _events_night(False, near_gap=0.2)
    chosen = {"x": calibrate.rescored(PostProcessing(0.5), "x", [plain_scores], [plain], ["x"],
                                      GRID, RATE)}
    assert chosen["x"].f1 == 1.0
    dipped, dipped_scores = _events_night(True, seed=1)
    alone, kept = (calibrate.choose_low_thresholds(chosen, [dipped_scores], [dipped], ["x"],
                                                   GRID, RATE, kept_on=on)["x"]
                   for on in (None, ([plain_scores], [plain], 1)))
    assert (alone.low_threshold, kept.low_threshold) == (0.125, 0.25)
    for pp in (alone, kept):
        assert calibrate.rescored(pp, "x", [dipped_scores], [dipped], ["x"], GRID, RATE).f1 == 1.0
    assert calibrate.rescored(kept, "x", [plain_scores], [plain], ["x"], GRID, RATE).f1 == 1.0
    assert calibrate.rescored(alone, "x", [plain_scores], [plain], ["x"], GRID, RATE).f1 < 0.9


def test_too_few_events_with_dips_to_show_a_cost_keep_the_shallowest():
    """A sequence with fewer than MIN_DIP_EVENTS events (a review loop's two validation
    clips) cannot show what bridging costs: every low threshold is within its slack, and
    none (the threshold) stays, where the same sequence with 40 events takes the deepest."""
    few, few_scores = _events_night(False, events=calibrate.MIN_DIP_EVENTS - 1)
    chosen = {"x": calibrate.rescored(PostProcessing(0.5), "x", [few_scores], [few], ["x"],
                                      GRID, RATE)}
    low = calibrate.choose_low_thresholds(chosen, [few_scores], [few], ["x"], GRID, RATE)
    assert low["x"] == PostProcessing(0.5)
    many, many_scores = _events_night(False)
    low = calibrate.choose_low_thresholds(chosen, [many_scores], [many], ["x"], GRID, RATE)
    assert low["x"].low_threshold == 0.125


def _runs_night(run_windows: int, lone_spikes: bool):
    """(Sequence, scores [windows, 1]): 30 events, each a run of `run_windows` windows
    scoring 0.9 between windows scoring 0.05, ten windows apart; with `lone_spikes`, one
    window scoring 0.8 midway between each two events (a false alarm no one marked)."""
    scores, spans = [0.05] * 10, []
    for _ in range(30):
        spans.append((len(scores), len(scores) + run_windows - 1))
        scores += [0.9] * run_windows + [0.05] * 5
        scores += ([0.8] if lone_spikes else [0.05]) + [0.05] * 4
    duration_s = len(scores) * GRID.hop_s + GRID.window_s / 2
    lo, hi = window_bounds(len(scores), GRID, duration_s)
    events = tuple(Event(float(lo[a]), float(hi[b]), "x") for a, b in spans)
    sequence = calibrate.Sequence("night", np.zeros(int(duration_s * RATE), np.float32), events)
    return sequence, np.array(scores)[:, None]


def test_among_equally_good_settings_those_dropping_a_lone_window_come_first():
    """Validation audio without lone-window false alarms: settings that keep every event
    and settings that also drop a segment one window makes alone score alike there, and the
    second kind is chosen; on audio that holds such false alarms, it keeps them out where
    the plainest setting (threshold 0.5, nothing else) writes every one."""
    sequence, scores = _runs_night(run_windows=4, lone_spikes=False)
    choice = calibrate.choose([scores], [sequence], ["x"], (), GRID, RATE)["x"]
    pp = choice.post_processing
    assert choice.f1 == 1.0 and calibrate.needs_two_windows(pp, GRID.hop_s)
    assert not calibrate.needs_two_windows(PostProcessing(0.5), GRID.hop_s)
    spiky, spiky_scores = _runs_night(run_windows=4, lone_spikes=True)
    chosen, plainest = (calibrate.rescored(p, "x", [spiky_scores], [spiky], ["x"], GRID, RATE)
                        for p in (pp, PostProcessing(0.5)))
    assert (chosen.f1, chosen.predicted_events) == (1.0, 30)
    assert (plainest.precision, plainest.predicted_events) == (0.5, 60)


def test_events_one_window_long_keep_settings_that_write_one_window():
    """Where the events themselves are one window long, dropping what one window makes
    loses them all: the plainest setting that finds them is chosen, as before."""
    sequence, scores = _runs_night(run_windows=1, lone_spikes=False)
    choice = calibrate.choose([scores], [sequence], ["x"], (), GRID, RATE)["x"]
    assert choice.f1 == 1.0
    assert not calibrate.needs_two_windows(choice.post_processing, GRID.hop_s)


def _clip(key, label, seconds=1.0):
    return RecordingEvents(key=key, source=key + ".wav", split="validation", duration_s=seconds,
                           events=(Event(0.0, seconds, label),))


def test_clip_sequences_join_some_events_across_a_quiet_dip():
    clips = [_clip(f"s{i}", "snore") for i in range(8)] + [_clip(f"n{i}", "not_snore")
                                                          for i in range(8)]
    decoded = {c.source: np.full(RATE, 1.0 if c.events[0].label == "snore" else 0.5, np.float32)
               for c in clips}
    plain = calibrate.clip_sequence(clips, RATE, "HQ", None, {"not_snore"}, 3, decoded)
    dipped = calibrate.clip_sequence(clips, RATE, "HQ", None, {"not_snore"}, 3, decoded,
                                     dip_every=1, dip_s=(0.3, 0.5))
    snores, dipped_snores = ([e for e in q.events if e.label == "snore"] for q in (plain, dipped))
    assert [e.end_s - e.start_s for e in snores] == [1.0] * 8
    assert len(dipped_snores) == 8   # each event clip joined to another across a dip
    for e in dipped_snores:
        assert 2.3 <= e.end_s - e.start_s <= 2.5
        inside = dipped.waveform[int(round(e.start_s * RATE)):int(round(e.end_s * RATE))]
        quiet = inside[RATE:len(inside) - RATE]   # between the two clips
        assert len(quiet) >= 3 and np.allclose(quiet, 0.5 * calibrate.DIP_GAIN)
    # the clips between events are the ones without dips, in the same order
    gaps = [e.start_s - p.end_s for p, e in zip(snores, snores[1:])]
    assert gaps == [e.start_s - p.end_s for p, e in zip(dipped_snores, dipped_snores[1:])]


def test_scores_shared_across_hops_equal_each_hop_scored_alone():
    rng = np.random.default_rng(0)
    window, hops = 400, [200, 100, 300, 150]   # 150: not a multiple, scored alone
    sequences = [calibrate.Sequence(f"s{i}", rng.normal(size=n).astype(np.float32), ())
                 for i, n in enumerate((1234, 400, 399, 1500, 1601))]
    calls = []

    def predict(windows):   # a deterministic "model": two numbers per window
        calls.append(len(windows))
        return np.stack([windows.mean(axis=1), np.abs(windows).max(axis=1)], axis=1)

    shared = calibrate.score_sequences(sequences, predict, window, hops)
    scored = sum(calls)
    for h in hops:
        for s, got in zip(sequences, shared[h]):
            np.testing.assert_array_equal(got, predict(frame_windows(s.waveform, window, h)))
    alone = sum(len(frame_windows(s.waveform, window, h)) for s in sequences for h in hops)
    assert scored < alone   # the model ran on fewer windows than each hop alone


# --- spans a person reviewed (folders of verdicts) -------------------------------------------

REVIEWED_EACH = 12   # yes and no spans of a reviewed stretch: a difference of one is noise


def _reviewed_stretch(with_spike_elsewhere: bool):
    """(Sequence, scores [windows, 1]): a reviewed stretch where each `yes` span sits on a
    run of five windows scoring 0.9 and each `no` span on one window spiking to 0.8 (a
    false alarm a threshold keeps and smoothing removes), between windows scoring 0.05;
    optionally one more spike no one reviewed."""
    scores, events, negatives = [0.05] * 4, [], []
    lo_hi = []
    for k in range(2 * REVIEWED_EACH):
        start = len(scores)
        if k % 2 == 0:
            scores += [0.9] * 5
            lo_hi.append(("yes", start, start + 4))
        else:
            scores += [0.8]
            lo_hi.append(("no", start, start))
        scores += [0.05] * 6
    scores += ([0.8] if with_spike_elsewhere else [0.05]) + [0.05] * 6
    duration_s = len(scores) * GRID.hop_s + GRID.window_s / 2
    lo, hi = window_bounds(len(scores), GRID, duration_s)
    for verdict, a, b in lo_hi:   # the span a reviewer heard: the windows' share of time
        span = (float(lo[a]), float(hi[b]))
        (events.append(Event(*span, "x")) if verdict == "yes" else negatives.append(span))
    sequence = calibrate.Sequence("night@0-30", np.zeros(int(duration_s * RATE), np.float32),
                                  tuple(events), tuple(negatives), reviewed=True)
    return sequence, np.array(scores)[:, None]


def test_reviewed_spans_count_hits_and_false_alarms_only_where_a_person_answered():
    sequence, scores = _reviewed_stretch(with_spike_elsewhere=False)
    plain = calibrate.rescored(PostProcessing(0.5), "x", [scores], [sequence], ["x"], GRID, RATE)
    # every yes found; each spike on a `no` span is a false alarm
    n = REVIEWED_EACH
    assert (plain.truth_events, plain.predicted_events, plain.reviewed_events) == (n, 2 * n, n)
    assert plain.precision == 0.5 and plain.recall == 1.0
    _, unreviewed = _reviewed_stretch(with_spike_elsewhere=True)
    again = calibrate.rescored(PostProcessing(0.5), "x", [unreviewed], [sequence], ["x"], GRID,
                               RATE)
    assert again == plain   # a segment where no one listened is not counted either way
    # the choice: settings that keep the runs and drop the spikes, which the plainest
    # setting (threshold 0.5, nothing else) does not
    choice = calibrate.choose([scores], [sequence], ["x"], (), GRID, RATE)["x"]
    assert (choice.f1, choice.predicted_events) == (1.0, REVIEWED_EACH)
    assert choice.post_processing != PostProcessing(0.5)


def test_a_no_on_another_labels_item_is_no_false_alarm_for_this_label():
    """The `no` spans of `_reviewed_stretch` answered for label y: x's segments there are
    neither hits nor false alarms (no one said whether x was there); for y they are."""
    sequence, scores = _reviewed_stretch(with_spike_elsewhere=False)
    on_y = dataclasses.replace(sequence, negatives=tuple((a, b, "y") for a, b in sequence.negatives))
    two = np.concatenate([scores, scores], axis=1)
    x = calibrate.rescored(PostProcessing(0.5), "x", [two], [on_y], ["x", "y"], GRID, RATE)
    n = REVIEWED_EACH
    assert (x.truth_events, x.predicted_events, x.precision) == (n, n, 1.0)
    y = calibrate.rescored(PostProcessing(0.5), "y", [two], [on_y], ["x", "y"], GRID, RATE)
    assert (y.truth_events, y.predicted_events) == (0, n)   # the spikes on its `no` spans


def test_reviewed_and_fully_annotated_sequences_are_counted_together():
    night, night_scores = _events_night(False)
    stretch, stretch_scores = _reviewed_stretch(with_spike_elsewhere=True)
    both = calibrate.rescored(PostProcessing(0.5), "x", [night_scores, stretch_scores],
                              [night, stretch], ["x"], GRID, RATE)
    alone = calibrate.rescored(PostProcessing(0.5), "x", [night_scores], [night], ["x"], GRID,
                               RATE)
    n = REVIEWED_EACH
    assert both.truth_events == alone.truth_events + n and both.reviewed_events == n
    assert both.predicted_events == alone.predicted_events + 2 * n
    # one event's worth of slack counts a reviewed span once, a clip-order event once per order
    calibration = {"orders": 3, "per_label": {"x": both.to_dict()}}
    assert calibrate.mean_event_f1(calibration)[1] == pytest.approx(
        1 / ((both.truth_events - n) / 3 + n))


def test_reviewed_sequences_are_the_stretches_around_reviewed_spans(tmp_path):
    from earmark.model.data import ReviewedRecording
    rate = 8000
    waveform = np.random.default_rng(0).uniform(-0.5, 0.5, 60 * rate).astype(np.float32)
    path = str(tmp_path / "night.wav")
    sf.write(path, waveform, rate, subtype="FLOAT")
    recording = ReviewedRecording("night.wav", path, 60.0,
                                  (Event(10.0, 11.0, "x"), Event(55.0, 56.0, "x")),
                                  ((2.0, 3.0, None), (14.0, 15.0, "x")))

    def read_bytes(p):
        with open(p, "rb") as f:
            return f.read()
    got = calibrate.reviewed_sequences([recording], rate, "HQ", read_bytes)
    context = calibrate.REVIEWED_CONTEXT_S
    # 2-3 s and 10-11 s and 14-15 s are within twice the context of each other: one stretch
    assert [s.name for s in got] == ["night.wav@0-20", "night.wav@50-60"]
    first, last = got
    assert (first.events, first.negatives) == ((Event(10.0, 11.0, "x"),),
                                               ((2.0, 3.0, None), (14.0, 15.0, "x")))
    assert (last.events, last.negatives) == ((Event(5.0, 6.0, "x"),), ())
    assert first.reviewed and last.reviewed
    np.testing.assert_allclose(first.waveform, waveform[:int((15 + context) * rate)], atol=1e-6)
    np.testing.assert_allclose(last.waveform, waveform[50 * rate:], atol=1e-6)
