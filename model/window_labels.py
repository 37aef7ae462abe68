"""Which label(s) a training window gets from the events of its recording.

A window covered by at least `min_overlap` of an event (as a fraction of the window, or of
the event when the event is shorter than the window) gets that event's label; overlapping
events of different labels give a multi-label window. A window that touches an event, or
an ignored span (a bad annotation's), less than that is ambiguous and left out of
training. A window that touches nothing gets the background label, or is left out when
there is none; with `extent="selections"` (a partly annotated recording: only what the user
selected is known) it is left out unless a negative selection (a span the user marked as
holding no event) covers it, which makes it a background example. There a negative says
only what it names: `not_snore` (a `no` verdict on a snore detection) rules out snore and
nothing else, so its window is background only when every label the recording is
annotated for is ruled out there (`background`, `noise` and --negative-label names rule
out all); otherwise it is left out (`negates_some_labels`), never a wrong negative for the
labels no one answered for. A labeled clip is one event spanning the whole clip, so clip
corpora follow the same rule (a zero-padded tail window holding little of the clip is
ambiguous).
"""
import dataclasses

import numpy as np

from earmark.model.events import Event

DEFAULT_MIN_OVERLAP = 0.5
EVENT, BACKGROUND, AMBIGUOUS, NO_BACKGROUND = "event", "background", "ambiguous", "no_background"
OUTSIDE_SELECTIONS = "outside_selections"
NEGATES_SOME = "negates_some_labels"
EXTENTS = ("full", "selections")  # what an annotated recording's tables cover


@dataclasses.dataclass(frozen=True)
class WindowLabel:
    kind: str       # EVENT, BACKGROUND, AMBIGUOUS, NO_BACKGROUND (background dropped),
    #                 OUTSIDE_SELECTIONS (extent "selections": nothing known there) or
    #                 NEGATES_SOME (negatives there rule out some of `labels` only)
    labels: tuple   # sorted label names; empty unless kind is EVENT or BACKGROUND


def label_windows(starts_s: np.ndarray, window_s: float, events, ignore=(),
                  min_overlap: float = DEFAULT_MIN_OVERLAP, background: str = None,
                  negatives=(), negative_label: str = None, extent: str = "full",
                  labels=()) -> list:
    """→ one `WindowLabel` per window starting at `starts_s`. `events`: `Event`s (or objects
    with start_s, end_s, label); `ignore`: (start_s, end_s) spans whose windows are left
    out of training whatever else they hold; `negatives`: (start_s, end_s) spans marked as
    holding no event, or (start_s, end_s, label) spans holding no event of `label` (None:
    of any): a window they cover at least `min_overlap` of, for every one of `labels` (for
    any label when `labels` is empty), and no event touches, is background
    (`negative_label`, default `background`); covered for some of `labels` only, it is
    NEGATES_SOME; `extent`: see the module."""
    if extent not in EXTENTS:
        raise ValueError(f"extent {extent!r}: one of {', '.join(EXTENTS)}")
    events = list(events)
    negative_label = negative_label or background
    ev_start = np.array([e.start_s for e in events], np.float64)
    ev_end = np.array([e.end_s for e in events], np.float64)
    needed = min_overlap * np.minimum(window_s, ev_end - ev_start) - 1e-9
    ruled_out = _ruled_out_spans(negatives, labels)
    out = []
    for start in np.asarray(starts_s, np.float64):
        end = start + window_s
        if any(min(end, b) - max(start, a) > 0 for a, b in ignore):
            out.append(WindowLabel(AMBIGUOUS, ()))
            continue
        overlap = np.minimum(end, ev_end) - np.maximum(start, ev_start)
        touched = np.flatnonzero(overlap > 0)
        covered = {events[i].label for i in touched if overlap[i] >= needed[i]}
        negative = [sum(max(0.0, min(end, b) - max(start, a)) for a, b in spans)
                    >= min_overlap * window_s - 1e-9 for spans in ruled_out]
        # a window is that label's only if no other label's event reaches into it
        if covered and all(events[i].label in covered for i in touched):
            out.append(WindowLabel(EVENT, tuple(sorted(covered))))
        elif len(touched):
            out.append(WindowLabel(AMBIGUOUS, ()))
        elif negative_label and negative and all(negative):
            out.append(WindowLabel(BACKGROUND, (negative_label,)))
        elif negative_label and any(negative):
            out.append(WindowLabel(NEGATES_SOME, ()))
        elif extent == "selections":
            out.append(WindowLabel(OUTSIDE_SELECTIONS, ()))
        elif background is None:
            out.append(WindowLabel(NO_BACKGROUND, ()))
        else:
            out.append(WindowLabel(BACKGROUND, (background,)))
    return out


def _ruled_out_spans(negatives, labels) -> list:
    """Per label of `labels` (one entry for all when empty), the merged spans of `negatives`
    that rule it out: those naming it and those naming none."""
    spans = [(n[0], n[1], n[2] if len(n) > 2 else None) for n in negatives]
    if not spans:
        return []
    if not labels:
        return [merged_spans((a, b) for a, b, _ in spans)]
    return [merged_spans((a, b) for a, b, named in spans if named in (None, label))
            for label in labels]


@dataclasses.dataclass(frozen=True)
class WindowRules:
    """How prepare labels the windows of annotated recordings (recorded in features.json)."""
    min_overlap: float = DEFAULT_MIN_OVERLAP
    background: str = None          # unannotated time's label (extent full); None: left out
    extent: str = "full"            # EXTENTS
    negative_labels: tuple = ()     # more annotation labels that mark "no event here"
    # extent "selections": the labels a negative selection's window must be known not to
    # hold to be background (the recordings' event labels, and those `not_X` rows name)
    event_labels: tuple = ()

    @property
    def negative_label(self) -> str:
        """The label negative selections train as."""
        return self.background or "background"

    @property
    def _generic_negatives(self) -> tuple:
        return self.negative_labels + ((self.background,) if self.background else ())

    def is_negative(self, label: str) -> bool:
        return is_negative(label, self._generic_negatives)

    def negated(self, label: str, known=None):
        """The label a negative annotation rules out (`negated_label`), matched by case to
        `known` (default `event_labels`); None: every label."""
        return negated_label(label, self._generic_negatives,
                             self.event_labels if known is None else known)

    def label(self, starts_s, window_s: float, events, ignore=()) -> list:
        """`label_windows` of a recording's annotated events (negative ones split off)."""
        positives = [e for e in events if not self.is_negative(e.label)]
        negatives = [(e.start_s, e.end_s, self.negated(e.label)) for e in events
                     if self.is_negative(e.label)]
        labels = self.event_labels if self.extent == "selections" else ()
        return label_windows(starts_s, window_s, positives, ignore, self.min_overlap,
                             self.background, negatives, self.negative_label, self.extent,
                             labels)


# A recording annotated with --annotated-extent full (the default) whose longest stretch
# with no annotation is at least this long and this share of it looks partly annotated:
# there, a user who annotated the first hour of a night and forgot `selections` trains the
# other seven as background
PARTLY_ANNOTATED_MIN_S = 30 * 60
PARTLY_ANNOTATED_SHARE = 0.5


def longest_unannotated(duration_s: float, spans) -> tuple:
    """(start_s, end_s) of the longest stretch of a recording that no (start_s, end_s, ...)
    span touches (the first such stretch when several are as long)."""
    best, reached = (0.0, 0.0), 0.0
    for a, b, *_ in sorted(spans):
        if a - reached > best[1] - best[0]:
            best = (reached, a)
        reached = max(reached, b)
    return (reached, duration_s) if duration_s - reached > best[1] - best[0] else best


def looks_partly_annotated(duration_s: float, spans):
    """The unannotated stretch (`longest_unannotated`) that makes a recording with
    annotations look partly annotated (`PARTLY_ANNOTATED_MIN_S` long and
    `PARTLY_ANNOTATED_SHARE` of it, or more), else None (and None without annotations: an
    empty table says the recording holds no event)."""
    if not spans:
        return None
    a, b = longest_unannotated(duration_s, spans)
    long_enough = b - a >= max(PARTLY_ANNOTATED_MIN_S, PARTLY_ANNOTATED_SHARE * duration_s)
    return (a, b) if long_enough else None


def merged_spans(spans) -> list:
    """(start, end) spans, sorted, overlapping ones joined (so coverage is not counted twice)."""
    out = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def clip_event(label: str, duration_s: float) -> Event:
    """A labeled clip as an event: the whole clip."""
    return Event(0.0, duration_s, label)


BACKGROUND_NAMES = ("background", "noise", "silence", "none", "nothing")
NEGATIVE_PREFIXES = ("not_", "not-", "no_", "no-", "non_", "non-")


def is_negative(label: str, negative_labels=()) -> bool:
    """Whether an annotation's label marks a span holding no event: `background`, a name
    in `negative_labels` (--negative-label, the --background label), or `not_<label>`
    style (`NEGATIVE_PREFIXES`), in any case."""
    lowered = label.lower()
    return lowered == "background" or lowered in {n.lower() for n in negative_labels} \
        or lowered.startswith(NEGATIVE_PREFIXES)


def negated_label(label: str, negative_labels=(), known=()):
    """The label a negative annotation rules out: `snore` for `not_snore` style
    (`NEGATIVE_PREFIXES`; spelled as in `known` when it matches one there in another case);
    None, every label, for `background` and the names in `negative_labels`."""
    lowered = label.lower()
    if lowered == "background" or lowered in {n.lower() for n in negative_labels}:
        return None
    prefix = next((p for p in NEGATIVE_PREFIXES if lowered.startswith(p)), None)
    if prefix is None:
        return None
    name = label[len(prefix):]
    return next((k for k in known if k.lower() == name.lower()), name)


def spelling_key(label: str) -> str:
    """What two spellings of one label share: case and Unicode normalization set aside
    (`Snore`, `snore`; `é` typed on macOS or on Windows)."""
    import unicodedata
    return unicodedata.normalize("NFC", label).casefold()


def one_spelling(counts) -> dict:
    """{label: the label it is read as} for labels written in more than one way
    (`spelling_key`: `Snore`, `snore`): each is read as the spelling most rows use
    (`counts`: {label: rows}; a tie: the first in sorted order), so one sound is never two
    classes that train as each other's negatives. Labels written one way are not in it."""
    groups = {}
    for label in sorted(counts):
        groups.setdefault(spelling_key(label), []).append(label)
    return {label: min(spellings, key=lambda l: (-counts[l], l))
            for spellings in groups.values() if len(spellings) > 1 for label in spellings}


def background_labels(labels) -> list:
    """The labels of a clip corpus that mean "nothing to report" (`background`, `noise`,
    `not_snore`, ...): a model never writes them as segments unless asked."""
    return [l for l in labels if l.lower() in BACKGROUND_NAMES
            or l.lower().startswith(NEGATIVE_PREFIXES)]
