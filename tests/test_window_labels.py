import numpy as np

from earmark.model.events import Event
from earmark.model.window_labels import (AMBIGUOUS, BACKGROUND, EVENT, NO_BACKGROUND, clip_event,
                                 label_windows)


def kinds(result):
    return [(w.kind, w.labels) for w in result]


def test_overlap_rule_event_ambiguous_background():
    # windows of 1 s every 0.5 s; one 2-s snore from 1.0 to 3.0
    starts = np.arange(8) * 0.5
    got = kinds(label_windows(starts, 1.0, [Event(1.0, 3.0, "snore")], background="bg"))
    assert got == [
        (BACKGROUND, ("bg",)),   # 0.0-1.0 touches nothing (ends where the event starts)
        (EVENT, ("snore",)),     # 0.5-1.5: half the window -> at the 0.5 default, labeled
        (EVENT, ("snore",)), (EVENT, ("snore",)), (EVENT, ("snore",)),
        (EVENT, ("snore",)),     # 2.5-3.5: half
        (BACKGROUND, ("bg",)),   # 3.0-4.0
        (BACKGROUND, ("bg",)),
    ]
    got = kinds(label_windows([0.4], 1.0, [Event(1.0, 3.0, "snore")], background="bg"))
    assert got == [(AMBIGUOUS, ())]  # 0.4 of the window: touched, not enough


def test_short_event_counts_by_its_own_length():
    # a 0.3-s event wholly inside a 1-s window labels it; half of it still does
    assert kinds(label_windows([0.0], 1.0, [Event(0.2, 0.5, "click")])) == [(EVENT, ("click",))]
    assert kinds(label_windows([0.0], 1.0, [Event(0.85, 1.15, "click")])) == [(EVENT, ("click",))]
    assert kinds(label_windows([0.0], 1.0, [Event(0.9, 1.2, "click")])) == [(AMBIGUOUS, ())]


def test_overlapping_labels_give_multi_label_windows_and_partial_others_are_ambiguous():
    events = [Event(0.0, 2.0, "a"), Event(0.5, 2.0, "b")]
    assert kinds(label_windows([0.5], 1.0, events)) == [(EVENT, ("a", "b"))]
    events = [Event(0.0, 2.0, "a"), Event(1.3, 2.0, "b")]
    assert kinds(label_windows([0.5], 1.0, events)) == [(AMBIGUOUS, ())]


def test_background_none_and_ignored_spans():
    assert kinds(label_windows([0.0, 5.0], 1.0, [Event(0.0, 1.0, "x")], background=None)) == [
        (EVENT, ("x",)), (NO_BACKGROUND, ())]
    got = label_windows([0.0, 5.0], 1.0, [Event(0.0, 1.0, "x")], ignore=[(5.5, 9.0)],
                        background="bg")
    assert kinds(got) == [(EVENT, ("x",)), (AMBIGUOUS, ())]


def test_a_clip_is_one_event_and_its_padded_tail_window_is_ambiguous():
    # a 1.0-s clip in 0.975-s windows every 0.96 s: the second window holds 0.04 s of it
    got = label_windows([0.0, 0.96], 0.975, [clip_event("snore", 1.0)])
    assert kinds(got) == [(EVENT, ("snore",)), (AMBIGUOUS, ())]
    # a clip shorter than the window labels its one (padded) window
    assert kinds(label_windows([0.0], 0.975, [clip_event("snore", 0.3)])) == [(EVENT, ("snore",))]


def test_selections_extent_uses_only_selected_time_and_negative_selections():
    from earmark.model.window_labels import OUTSIDE_SELECTIONS, WindowRules
    starts = np.arange(8) * 1.0
    events = [Event(1.0, 2.0, "snore"), Event(4.0, 6.0, "not_snore"), Event(6.3, 6.6, "noise")]
    rules = WindowRules(background="bg", extent="selections", negative_labels=("noise",))
    got = kinds(rules.label(starts, 1.0, events))
    assert got == [
        (OUTSIDE_SELECTIONS, ()), (EVENT, ("snore",)), (OUTSIDE_SELECTIONS, ()),
        (OUTSIDE_SELECTIONS, ()),
        (BACKGROUND, ("bg",)), (BACKGROUND, ("bg",)),   # inside the not_snore selection
        (OUTSIDE_SELECTIONS, ()),                       # 0.3 s of "noise": too little known
        (OUTSIDE_SELECTIONS, ())]
    # the same selections with extent full: unselected time is background too
    full = kinds(WindowRules(background="bg", negative_labels=("noise",)).label(starts, 1.0, events))
    assert full == [(BACKGROUND, ("bg",)), (EVENT, ("snore",))] + [(BACKGROUND, ("bg",))] * 6


def test_a_negative_rules_out_only_the_label_it_names_on_partly_annotated_recordings():
    """A `no` verdict on a snore item (`not_snore`) says nothing of cough: with both labels
    annotated, its windows are left out, never background; `noise` rules out every label,
    and with snore the only label `not_snore` does too."""
    from earmark.model.window_labels import NEGATES_SOME, OUTSIDE_SELECTIONS, WindowRules
    starts = np.arange(6) * 1.0
    events = [Event(0.0, 1.0, "cough"), Event(1.0, 3.0, "not_snore"), Event(3.0, 4.0, "Not_Cough"),
              Event(3.0, 4.0, "not_snore"), Event(4.0, 5.0, "noise")]
    rules = WindowRules(background="bg", extent="selections", negative_labels=("noise",),
                        event_labels=("cough", "snore"))
    assert kinds(rules.label(starts, 1.0, events)) == [
        (EVENT, ("cough",)), (NEGATES_SOME, ()), (NEGATES_SOME, ()),
        (BACKGROUND, ("bg",)),      # a no on each label
        (BACKGROUND, ("bg",)),      # noise: nothing of any label
        (OUTSIDE_SELECTIONS, ())]
    assert rules.negated("Not_Cough") == "cough" and rules.negated("noise") is None
    only_snore = WindowRules(background="bg", extent="selections", event_labels=("snore",))
    assert kinds(only_snore.label([1.0], 1.0, events[1:2])) == [(BACKGROUND, ("bg",))]
    # a fully annotated recording holds every event there is: any negative is background
    full = WindowRules(background=None, negative_labels=("noise",), event_labels=("cough", "snore"))
    assert kinds(full.label([1.0], 1.0, events[1:2])) == [(BACKGROUND, ("background",))]


def test_a_recording_annotated_in_a_small_part_only_looks_partly_annotated():
    from earmark.model.window_labels import longest_unannotated, looks_partly_annotated
    hour = 3600.0
    assert longest_unannotated(8 * hour, [(60.0, 70.0, "snore"), (100.0, 3000.0, "x")]) == \
        (3000.0, 8 * hour)
    assert longest_unannotated(100.0, [(50.0, 60.0), (0.0, 10.0)]) == (10.0, 50.0)
    # the first hour of a night annotated: the other seven look unannotated
    assert looks_partly_annotated(8 * hour, [(120.0, 125.0, "snore"), (3500.0, 3502.0, "snore")]) \
        == (3502.0, 8 * hour)
    # snores all night, with quiet hours between them: fine
    assert looks_partly_annotated(8 * hour, [(t, t + 5, "snore") for t in range(0, 28800, 7000)]) \
        is None
    assert looks_partly_annotated(20 * 60.0, [(5.0, 6.0, "snore")]) is None   # under 30 min
    assert looks_partly_annotated(8 * hour, []) is None   # an empty table: no events at all
