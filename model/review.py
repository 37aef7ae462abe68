"""What a person should verify from a label run (`earmark review`): pure functions on
segments and window scores, no file access (`earmark/review.py` reads and writes).

Strategies (`STRATEGIES`), each filling its share of the budget:
- `uncertain` (margin sampling): per label, the windows whose score lies nearest the label's
  threshold — the score after the label's own smoothing, which is what the threshold is
  compared with; without window scores, the segments whose confidence does (the weakest
  detections).
- `top`: per label, its highest-confidence segments (a precision audit).
- `random`: windows drawn uniformly from every window of the run (seeded: the same seed
  draws the same windows), each proposed as the label it comes nearest to calling: unbiased
  estimates of how common each label is.
- `mixed`: `MIXED_SHARES` of the budget (largest remainder); what one strategy cannot fill
  goes to the others, `uncertain` first.
`uncertain` and `top` spread their items: labels take turns, and no item overlaps another
of its recording in time; `uncertain` also lets recordings take turns within a label (each
turn, of the recordings not yet used in this round, the one whose best candidate is best;
a recording whose best is more than TURN_SLACK further from the threshold than the best
one's waits).
Memory stays bounded by the budget whatever the corpus: recordings are added one at a time.
"""
import dataclasses
import heapq
import itertools

import numpy as np

from earmark.model.segments import smooth

STRATEGIES = ("uncertain", "top", "random", "mixed")
NEEDS_SCORES = ("random", "mixed")   # the others work from segments alone
# mixed: the share of the budget each strategy gets, and the order they are chosen in
MIXED_SHARES = (("random", 0.25), ("top", 0.25), ("uncertain", 0.5))
SPILL_ORDER = ("uncertain", "top", "random")   # who fills what another could not
TURN_SLACK = 0.1   # recordings take turns among those this close to the most uncertain


@dataclasses.dataclass(frozen=True, order=True)
class Item:
    """One thing to verify: a segment, or a window (start and end those of the window)."""
    file: str
    start_s: float
    end_s: float
    label: str
    confidence: float   # a segment's confidence; a window's smoothed score for `label`
    strategy: str
    verdict: str = ""


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """What a label's scores are compared with: its threshold after its smoothing."""
    threshold: float
    smoothing_windows: int = 1


def split_budget(budget: int, strategy: str) -> dict:
    """{strategy: items} for `--strategy`: all to one, or `MIXED_SHARES` by largest
    remainder (ties to the earlier share)."""
    if strategy != "mixed":
        return {strategy: budget}
    exact = [(name, budget * share) for name, share in MIXED_SHARES]
    counts = {name: int(value) for name, value in exact}
    by_remainder = sorted(exact, key=lambda nv: -(nv[1] - int(nv[1])))
    for name, _ in by_remainder[:budget - sum(counts.values())]:
        counts[name] += 1
    return counts


def _overlaps(item: Item, taken: dict) -> bool:
    return any(min(item.end_s, e) - max(item.start_s, s) > 1e-9
               for s, e in taken.get(item.file, ()))


def _take(item: Item, taken: dict) -> None:
    taken.setdefault(item.file, []).append((item.start_s, item.end_s))


class Pool:
    """Candidates of a run, gathered recording by recording; `choose` then picks items.

    `rules`: {label: LabelRule} of the labels to review (not the background ones);
    `window_s`: the model's window; `budget`: the most items any strategy will be asked
    for (it bounds what is kept); `seed`: the random draw's."""

    def __init__(self, rules: dict, window_s: float, budget: int, seed: int = 0):
        self.rules, self.window_s, self.budget = rules, window_s, budget
        self.rng = np.random.default_rng(seed)
        self.segments = {label: [] for label in rules}       # label → [(-confidence, Item)]
        self.windows = {label: {} for label in rules}        # label → file → [(margin, Item)]
        self.random = []          # max-heap of the `budget` smallest random keys: (-key, n, Item)
        self.windows_seen = 0     # every window of every recording added
        self.has_scores = False
        self._counter = itertools.count()

    # --- gathering ---------------------------------------------------------------------

    def add_segments(self, segments) -> None:
        """Segments (objects with file, start_s, end_s, label, confidence) of any recordings;
        those of labels not reviewed are left out."""
        for s in segments:
            if s.label in self.rules:
                self.segments[s.label].append(
                    (-s.confidence, Item(s.file, s.start_s, s.end_s, s.label, s.confidence, "")))

    def add_scores(self, file: str, starts_s, scores: dict, duration_s: float = None) -> None:
        """One recording's window scores: window starts [n] and {label: scores [n]}; a
        window ends at its start + window_s, or at `duration_s` when that comes first."""
        starts_s = np.asarray(starts_s, np.float64)
        if not len(starts_s):
            return
        self.has_scores = True
        ends_s = starts_s + self.window_s
        if duration_s:
            ends_s = np.minimum(ends_s, max(duration_s, 0.0))
        smoothed = {label: smooth(np.asarray(scores[label], np.float64), rule.smoothing_windows)
                    for label, rule in self.rules.items() if label in scores}
        for label, values in smoothed.items():
            margins = np.abs(values - self.rules[label].threshold)
            picked = _spread_in_recording(file, starts_s, ends_s, values, margins, label,
                                          self.budget)
            if picked:
                self.windows[label][file] = picked
                self._keep_best_recordings(label)
        self._draw_random(file, starts_s, ends_s, smoothed)

    def _keep_best_recordings(self, label: str) -> None:
        """At most `budget` + 1 recordings per label are kept: a round takes one item from
        each, so the ones with the best first candidates are the only ones ever reached."""
        by_file = self.windows[label]
        if len(by_file) > self.budget + 1:
            worst = max(by_file, key=lambda f: (by_file[f][0][0], f))
            del by_file[worst]

    def _draw_random(self, file, starts_s, ends_s, smoothed) -> None:
        """Uniform sampling without replacement over all windows, streaming: every window
        gets a random key; the `budget` smallest keys seen so far are kept."""
        n = len(starts_s)
        self.windows_seen += n
        keys = self.rng.random(n)
        if not smoothed:
            return
        labels = list(smoothed)
        margins = np.stack([smoothed[l] - self.rules[l].threshold for l in labels])
        for i in np.argsort(keys, kind="stable")[:self.budget]:
            if len(self.random) == self.budget and -self.random[0][0] <= keys[i]:
                break
            best = int(np.argmax(margins[:, i]))
            label = labels[best]
            item = Item(file, round(float(starts_s[i]), 3), round(float(ends_s[i]), 3), label,
                        round(float(smoothed[label][i]), 4), "random")
            entry = (-float(keys[i]), next(self._counter), item)
            if len(self.random) < self.budget:
                heapq.heappush(self.random, entry)
            else:
                heapq.heapreplace(self.random, entry)

    # --- choosing -------------------------------------------------------------------------

    def choose(self, strategy: str, budget: int = None, reviewed=()) -> list:
        """The items of `--strategy` for `budget` (default the pool's), sorted by file and
        time; none overlaps a span of `reviewed` ((file, start_s, end_s) already verified in
        an earlier round). `random` and `mixed` need window scores (`NEEDS_SCORES`):
        ValueError."""
        budget = self.budget if budget is None else budget
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
        if strategy in NEEDS_SCORES and not self.has_scores:
            raise ValueError(f"strategy {strategy!r} needs window scores")
        wanted = split_budget(budget, strategy)
        chosen, taken = [], {}
        for file, start_s, end_s in reviewed:
            taken.setdefault(file, []).append((start_s, end_s))
        for name in wanted:      # MIXED_SHARES' order: random first, unbiased by the others
            chosen += self._pick(name, wanted[name], taken, chosen)
        for name in SPILL_ORDER:  # what one strategy could not fill
            if name in wanted and len(chosen) < budget:
                chosen += self._pick(name, budget - len(chosen), taken, chosen)
        return sorted(chosen)

    def _pick(self, strategy: str, n: int, taken: dict, chosen: list) -> list:
        if n <= 0:
            return []
        if strategy == "random":
            drawn = [item for _, _, item in sorted(self.random, key=lambda e: -e[0])]
            new = [item for item in drawn if item not in chosen
                   and not _overlaps(item, taken)][:n]
            for item in new:
                _take(item, taken)
            return new
        if strategy == "top":
            pools = {label: {"": sorted(found)} for label, found in self.segments.items()}
        elif self.has_scores:
            pools = self.windows
        else:
            pools = {label: _by_file([(abs(item.confidence - self.rules[label].threshold), item)
                                      for _, item in found])
                     for label, found in self.segments.items()}
        return [dataclasses.replace(item, strategy=strategy)
                for item in take_turns(pools, n, taken)]


def _by_file(candidates) -> dict:
    """[(rank, Item)] → {file: [(rank, Item)] best first}."""
    out = {}
    for c in sorted(candidates):
        out.setdefault(c[1].file, []).append(c)
    return out


def _spread_in_recording(file, starts_s, ends_s, values, margins, label, limit) -> list:
    """Up to `limit` [(margin, Item)] of one recording and label, nearest the threshold
    first, none overlapping another in time."""
    picked, spans = [], []
    for i in np.argsort(margins, kind="stable"):
        if len(picked) >= limit:
            break
        start, end = float(starts_s[i]), float(ends_s[i])
        if any(min(end, e) - max(start, s) > 1e-9 for s, e in spans):
            continue
        spans.append((start, end))
        picked.append((float(margins[i]), Item(file, round(start, 3), round(end, 3), label,
                                               round(float(values[i]), 4), "uncertain")))
    return picked


def take_turns(pools: dict, n: int, taken: dict) -> list:
    """Up to `n` items from `pools` ({label: {group: [(rank, Item)] best first}}): labels
    take turns; within a label, each turn the group (a recording) not yet used in this
    round whose best candidate ranks best; a candidate overlapping an item taken before
    (`taken`: {file: [(start_s, end_s)]}, updated) is passed over."""
    heads = {label: {g: 0 for g in groups} for label, groups in pools.items()}
    used = {label: set() for label in pools}
    out, active = [], [label for label in pools if pools[label]]
    while len(out) < n and active:
        for label in list(active):
            if len(out) >= n:
                break
            item = _next_of_label(pools[label], heads[label], used[label], taken)
            if item is None:
                active.remove(label)
                continue
            _take(item, taken)
            out.append(item)
    return out


def _next_of_label(groups: dict, heads: dict, used: set, taken: dict):
    """The label's next item (see `take_turns`), or None when it has none left. Groups
    whose best candidate ranks more than TURN_SLACK below the best group's wait: a recording
    with nothing uncertain left does not get a turn while others have."""
    for g in groups:   # skip what overlaps items taken since
        while heads[g] < len(groups[g]) and _overlaps(groups[g][heads[g]][1], taken):
            heads[g] += 1
    ranks = {g: groups[g][heads[g]][0] for g in groups if heads[g] < len(groups[g])}
    if not ranks:
        return None
    close = [g for g in ranks if ranks[g] <= min(ranks.values()) + TURN_SLACK]
    fresh = [g for g in close if g not in used]
    if not fresh:   # a new round
        used.clear()
        fresh = close
    best = min(fresh, key=lambda g: (ranks[g], g))
    used.add(best)
    heads[best] += 1
    return groups[best][heads[best] - 1][1]
