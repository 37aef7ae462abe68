"""Which label(s) a training window gets from the events of its recording.

A window covered by at least `min_overlap` of an event (as a fraction of the window, or of
the event when the event is shorter than the window) gets that event's label; overlapping
events of different labels give a multi-label window. A window that touches an event, or
an ignored span (a bad annotation's), less than that is ambiguous and left out of
training. A window that touches nothing gets the background label, or is left out when
there is none. A labeled clip is one event spanning the whole clip, so clip corpora follow
the same rule (a zero-padded tail window holding little of the clip is ambiguous).
"""
import dataclasses

import numpy as np

from earmark.model.events import Event

DEFAULT_MIN_OVERLAP = 0.5
EVENT, BACKGROUND, AMBIGUOUS, NO_BACKGROUND = "event", "background", "ambiguous", "no_background"


@dataclasses.dataclass(frozen=True)
class WindowLabel:
    kind: str       # EVENT, BACKGROUND, AMBIGUOUS or NO_BACKGROUND (background dropped)
    labels: tuple   # sorted label names; empty unless kind is EVENT or BACKGROUND


def label_windows(starts_s: np.ndarray, window_s: float, events, ignore=(),
                  min_overlap: float = DEFAULT_MIN_OVERLAP, background: str = None) -> list:
    """→ one `WindowLabel` per window starting at `starts_s`. `events`: `Event`s (or objects
    with start_s, end_s, label); `ignore`: (start_s, end_s) spans whose windows are left
    out of training whatever else they hold."""
    events = list(events)
    ev_start = np.array([e.start_s for e in events], np.float64)
    ev_end = np.array([e.end_s for e in events], np.float64)
    needed = min_overlap * np.minimum(window_s, ev_end - ev_start) - 1e-9
    out = []
    for start in np.asarray(starts_s, np.float64):
        end = start + window_s
        if any(min(end, b) - max(start, a) > 0 for a, b in ignore):
            out.append(WindowLabel(AMBIGUOUS, ()))
            continue
        overlap = np.minimum(end, ev_end) - np.maximum(start, ev_start)
        touched = np.flatnonzero(overlap > 0)
        covered = {events[i].label for i in touched if overlap[i] >= needed[i]}
        # a window is that label's only if no other label's event reaches into it
        if covered and all(events[i].label in covered for i in touched):
            out.append(WindowLabel(EVENT, tuple(sorted(covered))))
        elif len(touched):
            out.append(WindowLabel(AMBIGUOUS, ()))
        elif background is None:
            out.append(WindowLabel(NO_BACKGROUND, ()))
        else:
            out.append(WindowLabel(BACKGROUND, (background,)))
    return out


def clip_event(label: str, duration_s: float) -> Event:
    """A labeled clip as an event: the whole clip."""
    return Event(0.0, duration_s, label)


BACKGROUND_NAMES = ("background", "noise", "silence", "none", "nothing")
NEGATIVE_PREFIXES = ("not_", "not-", "no_", "no-", "non_", "non-")


def background_labels(labels) -> list:
    """The labels of a clip corpus that mean "nothing to report" (`background`, `noise`,
    `not_snore`, ...): a model never writes them as segments unless asked."""
    return [l for l in labels if l.lower() in BACKGROUND_NAMES
            or l.lower().startswith(NEGATIVE_PREFIXES)]
