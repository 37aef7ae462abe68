import itertools
import json
import random

import pytest

from earmark.model.event_metrics import event_f1, f1, iou, match_iou, match_onset, score, segment_counts
from earmark.model.events import Event


def ev(start, end, label="a"):
    return Event(start, end, label)


def test_exact_match():
    t, p = [ev(1.0, 3.0)], [ev(1.0, 3.0)]
    assert iou(t[0], p[0]) == 1.0
    assert match_iou(t, p) == [(0, 0)]
    assert match_onset(t, p) == [(0, 0)]
    assert event_f1(t, p) == (1, 1, 1)
    assert f1(1, 1, 1) == (1.0, 1.0, 1.0)


def test_prediction_split_in_two_one_matches_one_is_false_alarm():
    # truth [0, 4]; [0, 3]: IoU 3/4 = 0.75 (match); [3, 4]: IoU 1/4 = 0.25 (false alarm)
    t, p = [ev(0, 4)], [ev(0, 3), ev(3, 4)]
    assert iou(t[0], p[0]) == 0.75 and iou(t[0], p[1]) == 0.25
    assert match_iou(t, p) == [(0, 0)]
    assert event_f1(t, p) == (1, 1, 2)
    # precision 1/2, recall 1/1, f1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert f1(1, 1, 2) == pytest.approx((0.5, 1.0, 2 / 3))


def test_merged_prediction_spanning_two_truths_matches_neither():
    # [0, 5] vs [0, 2]: 2/5 = 0.4; vs [3, 5]: 2/5 = 0.4 -> both below 0.5
    t, p = [ev(0, 2), ev(3, 5)], [ev(0, 5)]
    assert iou(t[0], p[0]) == 0.4 and iou(t[1], p[0]) == 0.4
    assert match_iou(t, p) == []
    assert event_f1(t, p) == (0, 2, 1)
    assert f1(0, 2, 1) == (0.0, 0.0, 0.0)
    # by onset it does hit the first truth (onsets both 0)
    assert match_onset(t, p) == [(0, 0)]


def test_iou_exactly_at_the_threshold_counts():
    # [0, 2] vs [0, 1]: overlap 1, union 2 -> 0.5 exactly
    t, p = [ev(0, 2)], [ev(0, 1)]
    assert iou(t[0], p[0]) == 0.5
    assert match_iou(t, p, min_iou=0.5) == [(0, 0)]
    assert event_f1(t, p, min_iou=0.5) == (1, 1, 1)
    assert match_iou(t, p, min_iou=0.51) == []
    assert event_f1(t, p, min_iou=0.51) == (0, 1, 1)
    # the one tie IoU >= 0.5 allows on non-overlapping events: both halves at exactly 0.5,
    # only one may pair
    p = [ev(0, 1), ev(1, 2)]
    assert len(match_iou(t, p)) == 1
    assert event_f1(t, p) == (1, 1, 2)


def test_min_iou_must_be_positive():
    with pytest.raises(ValueError):
        match_iou([ev(0, 1)], [ev(2, 3)], min_iou=0.0)
    with pytest.raises(ValueError):
        event_f1([ev(0, 1)], [ev(2, 3)], min_iou=1.5)


def test_onset_collar_hits_where_iou_misses():
    # truth [0, 4], prediction [0.25, 1]: IoU 0.75 / 4 = 0.1875 < 0.5, onsets 0.25 apart <= 0.5
    t, p = [ev(0, 4)], [ev(0.25, 1.0)]
    assert iou(t[0], p[0]) == 0.1875
    assert match_iou(t, p) == []
    assert match_onset(t, p, collar_s=0.5) == [(0, 0)]
    assert match_onset(t, p, collar_s=0.2) == []
    # the collar is inclusive: onsets exactly 0.5 apart still hit
    assert match_onset([ev(0, 1)], [ev(0.5, 1.0)], collar_s=0.5) == [(0, 0)]


def test_one_to_one_two_predictions_on_one_truth():
    # truth [0, 2]; predictions [0, 2] (IoU 1) and [0.25, 2] (IoU 1.75/2 = 0.875): one tp, one fp
    t, p = [ev(0, 2)], [ev(0, 2), ev(0.25, 2.0)]
    assert iou(t[0], p[1]) == 0.875
    assert len(match_iou(t, p)) == 1
    assert event_f1(t, p) == (1, 1, 2)
    assert len(match_onset(t, p)) == 1


def _greedy_nearest_onset(truth, predicted, collar_s):
    """Closest onsets first, each event used once: the greedy matching the project avoids."""
    pairs = sorted((abs(t.start_s - p.start_s), i, j) for i, t in enumerate(truth)
                   for j, p in enumerate(predicted) if abs(t.start_s - p.start_s) <= collar_s)
    used_t, used_p, out = set(), set(), []
    for _, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t.add(i), used_p.add(j), out.append((i, j))
    return out


def test_maximum_matching_beats_greedy_on_onsets():
    # truth onsets A=0, B=0.75; predicted onsets P=0.5, Q=1.25; collar 0.5:
    # A-P 0.5 ok, B-P 0.25 ok, B-Q 0.5 ok, A-Q 1.25 no.
    # Greedy by nearest onset takes B-P (0.25) first, leaving A nothing: 1 pair.
    # Maximum matching: A-P and B-Q: 2 pairs.
    t = [ev(0.0, 0.5), ev(0.75, 1.25)]
    p = [ev(0.5, 0.7), ev(1.25, 1.5)]
    assert len(_greedy_nearest_onset(t, p, 0.5)) == 1
    assert match_onset(t, p, 0.5) == [(0, 0), (1, 1)]
    # In list order (sed_eval's old "greedy"): truth 0 (onset 0.5) may take P (0.25) or Q (1.0),
    # truth 1 (onset 0) only P. Taking the first found, truth 0 -> P, leaves truth 1 nothing;
    # the augmenting path moves truth 0 to Q.
    t = [ev(0.5, 0.75), ev(0.0, 0.25)]
    p = [ev(0.25, 0.4), ev(1.0, 1.5)]
    assert match_onset(t, p, 0.5) == [(0, 1), (1, 0)]


def _brute_force_max(truth, predicted, allowed):
    """Largest k such that some k truth events pair one-to-one with k predictions (tiny inputs only)."""
    for k in range(min(len(truth), len(predicted)), 0, -1):
        for ts in itertools.combinations(range(len(truth)), k):
            for ps in itertools.permutations(range(len(predicted)), k):
                if all(allowed(truth[i], predicted[j]) for i, j in zip(ts, ps)):
                    return k
    return 0


def _random_events(rng, n, kind):
    if kind == "sorted":  # non-overlapping, sorted: what post-processing produces
        cuts = sorted(rng.uniform(0, 30) for _ in range(2 * n))
        return [ev(cuts[2 * i], cuts[2 * i + 1]) for i in range(n)]
    if kind == "grid":  # quarter-second grid: exact IoU ties (0.5) and collar ties
        out = []
        for _ in range(n):
            s = rng.randrange(0, 40) * 0.25
            out.append(ev(s, s + rng.randrange(0, 9) * 0.25))
        return out
    out = []  # anything: overlapping, nested, unsorted
    for _ in range(n):
        s = rng.uniform(0, 10)
        out.append(ev(s, s + rng.expovariate(1.0)))
    return out


def test_matchings_are_maximum_against_brute_force():
    rng = random.Random(7)
    for case in range(150):
        kind = ("sorted", "grid", "any")[case % 3]
        t = _random_events(rng, rng.randrange(0, 6), kind)
        p = _random_events(rng, rng.randrange(0, 6), kind)
        for pairs, allowed in (
                (match_iou(t, p, 0.3), lambda a, b: iou(a, b) >= 0.3),
                (match_onset(t, p, 1.0), lambda a, b: abs(a.start_s - b.start_s) <= 1.0)):
            assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)
            assert all(allowed(t[i], p[j]) for i, j in pairs)
            assert len(pairs) == _brute_force_max(t, p, allowed)


def test_event_f1_equals_len_match_iou_on_random_cases():
    rng = random.Random(1234)
    several = 0
    for case in range(300):
        kind = ("sorted", "grid", "any")[case % 3]
        t = _random_events(rng, rng.randrange(0, 40), kind)
        p = _random_events(rng, rng.randrange(0, 60), kind)
        for min_iou in (0.3, 0.5, 0.7, 1.0):
            expected = len(match_iou(t, p, min_iou))
            assert event_f1(t, p, min_iou) == (expected, len(t), len(p)), (case, min_iou)
            several += expected > 0
    assert several > 300  # the cases did exercise matches


def test_segment_counts_with_partial_last_segment():
    # duration 3.5 s, 1-s segments: [0,1) [1,2) [2,3) [3,3.5) -> 4 segments, the last partial.
    # truth [0.5, 1.0] -> segment 0 only (touches 1.0 with zero overlap); [3.2, 3.4] -> segment 3.
    # predicted [0.9, 2.1] -> segments 0, 1, 2; [4.25, 4.5] lies past the last segment -> none.
    # truth {0, 3}, predicted {0, 1, 2}: tp 1 (0), fn 1 (3), fp 2 (1, 2)
    t = [ev(0.5, 1.0), ev(3.2, 3.4)]
    p = [ev(0.9, 2.1), ev(4.25, 4.5)]
    assert segment_counts(t, p, duration_s=3.5, segment_s=1.0) == (1, 1, 2)
    # 0.5-s segments, 7 of them: truth {1, 6}, predicted {1, 2, 3, 4}: tp 1, fn 1, fp 3
    assert segment_counts(t, p, duration_s=3.5, segment_s=0.5) == (1, 1, 3)
    # as in sed_eval, the partial last segment is a whole grid cell: [3.6, 4.0] falls in [3, 4)
    assert segment_counts(t, [ev(3.6, 4.0)], duration_s=3.5) == (1, 1, 0)
    # labels are kept apart: an "a" truth and a "b" prediction in the same segment don't hit
    assert segment_counts([ev(0.2, 0.4, "a")], [ev(0.5, 0.6, "b")], duration_s=1.0) == (0, 1, 1)
    assert segment_counts([], [], duration_s=0.0) == (0, 0, 0)


def test_score_keeps_labels_and_recordings_apart():
    truth = {"r1": [ev(0, 1, "a"), ev(2, 3, "c")], "r2": [ev(5, 6, "b")]}
    predicted = {"r1": [ev(0, 1, "b")], "r2": [ev(0, 1, "a"), ev(5, 6, "b")]}
    result = score(truth, predicted, {"r1": 2.0, "r2": 10.0}, ["a", "b"])
    json.dumps(result)
    assert result["recordings"] == 2
    a, b = result["per_label"]["a"], result["per_label"]["b"]
    assert set(result["per_label"]) == {"a", "b"}  # "c" is not a scored label: ignored
    # "a": truth in r1, prediction at the same time but in r2 -> no match anywhere
    assert (a["truth"], a["predicted"]) == (1, 1)
    for kind in ("iou", "onset_collar", "segment"):
        assert (a[kind]["tp"], a[kind]["fn"], a[kind]["fp"]) == (0, 1, 1)
    assert a["median_onset_error_s"] is None
    # "b": r2's prediction matches; r1's "b" sits on r1's "a" truth -> a false alarm
    assert (b["iou"]["tp"], b["iou"]["fn"], b["iou"]["fp"]) == (1, 0, 1)
    assert (b["iou"]["precision"], b["iou"]["recall"], b["iou"]["f1"]) == (0.5, 1.0, 0.6667)
    assert b["iou"]["threshold"] == 0.5 and b["onset_collar"]["collar_s"] == 0.5
    assert (b["segment"]["tp"], b["segment"]["fn"], b["segment"]["fp"], b["segment"]["segment_s"]) == (1, 0, 1, 1.0)
    # overall (counts summed): tp 1, fn 1, fp 2 -> precision 1/3, recall 1/2, f1 = (1/3) / (5/6) = 0.4
    o = result["overall"]
    assert (o["iou"]["tp"], o["iou"]["fn"], o["iou"]["fp"]) == (1, 1, 2)
    assert (o["iou"]["precision"], o["iou"]["recall"], o["iou"]["f1"]) == (0.3333, 0.5, 0.4)
    assert o["segment"]["f1"] == 0.4
    assert o["macro_f1_iou"] == 0.3333  # (0 + 2/3) / 2
    assert o["median_onset_error_s"] == 0.0 and o["median_offset_error_s"] == 0.0


def test_score_needs_every_recordings_duration():
    with pytest.raises(ValueError, match="r2"):
        score({"r1": []}, {"r2": [ev(0, 1)]}, {"r1": 1.0}, ["a"])


def test_empty_truth_and_predictions():
    assert match_iou([], []) == [] and match_onset([ev(0, 1)], []) == []
    assert event_f1([], []) == (0, 0, 0)
    assert event_f1([ev(0, 1)], []) == (0, 1, 0)
    assert event_f1([], [ev(0, 1)]) == (0, 0, 1)
    assert f1(0, 0, 0) == (0.0, 0.0, 0.0)
    assert f1(0, 3, 0) == (0.0, 0.0, 0.0)
    empty = score({}, {}, {}, ["a"])
    assert empty["recordings"] == 0
    assert empty["per_label"]["a"]["iou"] == {"threshold": 0.5, "tp": 0, "fp": 0, "fn": 0,
                                              "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert empty["overall"]["macro_f1_iou"] is None
    assert empty["overall"]["median_onset_error_s"] is None
    # predictions only: all false alarms; truth only: all misses
    only_pred = score({"r": []}, {"r": [ev(0, 1)]}, {"r": 2.0}, ["a", "b"])
    assert only_pred["per_label"]["a"]["iou"]["fp"] == 1 and only_pred["overall"]["macro_f1_iou"] == 0.0
    only_truth = score({"r": [ev(0, 1)]}, {}, {"r": 2.0}, ["a"])
    assert only_truth["per_label"]["a"]["segment"]["fn"] == 1 and only_truth["overall"]["iou"]["recall"] == 0.0


def test_median_onset_and_offset_errors():
    truth = {"r": [ev(0, 2), ev(4, 6), ev(10, 12), ev(0, 10, "b")]}
    predicted = {"r": [
        ev(0.25, 2.5),     # IoU 1.75/2.5 = 0.7:   onset error 0.25,  offset error 0.5
        ev(3.5, 6.0),      # IoU 2/2.5 = 0.8:      onset error 0.5,   offset error 0
        ev(10.125, 11.875),  # IoU 1.75/2 = 0.875: onset error 0.125, offset error 0.125
        ev(20, 21),        # unmatched: no error counted
        ev(1, 10, "b"),    # IoU 9/10 = 0.9:       onset error 1.0,   offset error 0
    ]}
    result = score(truth, predicted, {"r": 25.0}, ["a", "b"])
    a = result["per_label"]["a"]
    assert a["iou"]["tp"] == 3 and a["iou"]["fp"] == 1
    assert a["median_onset_error_s"] == 0.25   # of 0.125, 0.25, 0.5
    assert a["median_offset_error_s"] == 0.125  # of 0, 0.125, 0.5
    assert result["per_label"]["b"]["median_onset_error_s"] == 1.0
    # over all pairs: onsets 0.125, 0.25, 0.5, 1.0 -> 0.375; offsets 0, 0, 0.125, 0.5 -> 0.0625
    assert result["overall"]["median_onset_error_s"] == 0.375
    assert result["overall"]["median_offset_error_s"] == 0.0625
