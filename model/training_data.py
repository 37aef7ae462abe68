"""The prepared folders one `earmark train` run learns from (`--data A --data B ...`): the
starting examples and every round of verified detections, trained on together.

Each folder stays what `earmark prepare` wrote (`data.Prepared`): its shards are read, and
its bottleneck cache entry keyed, on their own, so a round of verdicts added later reuses
every earlier folder's cached features. Labels are merged by name, in order of first
appearance over the folders (the first folder's order first); each folder's label indices
are mapped onto the merged list as its rows are read. The folders must hold the same
features (`FeatureConfig.hash`). One folder is exactly that folder.

Where a later folder of verdicts answers time of a recording otherwise than an earlier
folder did (`no` where a round before said `yes`, or an event where an earlier folder has a
negative or background), **the later answer wins**: the earlier folder's windows in that
time are left out of training (`superseded_rows`), and where the later answer is about the
same item (`contradicts`: spans overlapping by at least half the shorter one), the earlier
answer is left out of calibration too. A person who changes their mind about a detection
corrects the training data by answering again in a later round, never by editing an
earlier one.
"""
import dataclasses
import hashlib

import numpy as np

from earmark.model import data
from earmark.model.errors import UserError
from earmark.model.window_labels import spelling_key


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Prepared folders in `--data` order, and what they share: the merged labels (and
    background labels) and their FeatureConfig (the first folder's)."""
    parts: tuple               # data.Prepared
    labels: tuple
    background_labels: tuple
    # per part: {source: [answers (`_answers`) of the folders of verdicts after it]}
    later_answers: tuple = ()

    @property
    def feature_config(self):
        return self.parts[0].feature_config

    @property
    def roots(self) -> list:
        return [p.root for p in self.parts]

    @property
    def data_hash(self) -> str:
        """The folder's content id; for several, one id of theirs in order."""
        if len(self.parts) == 1:
            return self.parts[0].data_hash
        joined = ",".join(p.data_hash for p in self.parts)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    @property
    def event_labels(self) -> tuple:
        return tuple(l for l in self.labels if l not in self.background_labels)

    def respelled(self, part: data.Prepared) -> dict:
        """{part's label: the merged label} where they differ only in case (`Snore` in a
        round of verdicts, `snore` in the starting clips: one label, the first folder's
        spelling)."""
        return {l: self.labels[i] for l, i in zip(part.labels, self.label_indices(part))
                if l != self.labels[i]}

    def unruled_labels(self, part: data.Prepared) -> tuple:
        """The labels this training learns that `part`'s negative selections do not rule out
        (a round of `no` verdicts on snore beside a folder that also labels cough): those
        background windows are left out, never negatives for labels no one answered for."""
        if part.negatives_rule_out is None:
            return ()
        ruled_out = {spelling_key(l) for l in part.negatives_rule_out}
        return tuple(l for l in self.event_labels if spelling_key(l) not in ruled_out)

    def kept_rows(self, part: data.Prepared, arrays: data.SplitArrays) -> np.ndarray:
        """[rows] bool: `part`'s rows (`arrays`: one of its splits, its own label indices)
        trained on: neither `unruled_rows` nor `superseded_rows`."""
        return ~self.unruled_rows(part, arrays.label) & ~self.superseded_rows(part, arrays)

    def unruled_rows(self, part: data.Prepared, labels: np.ndarray) -> np.ndarray:
        """[rows] bool: `part`'s background rows (`labels`: its own first-label indices) when
        `unruled_labels(part)`, which are left out."""
        if not self.unruled_labels(part):
            return np.zeros(len(labels), bool)
        background = [i for i, l in enumerate(part.labels) if l in part.background_labels]
        return np.isin(labels, background)

    def superseded_rows(self, part: data.Prepared, arrays: data.SplitArrays) -> np.ndarray:
        """[rows] bool: `part`'s windows that overlap time a later folder of verdicts answers
        otherwise (a window of a label where a later `no` rules that label out, or a
        background window where a later answer has an event), which are left out: never
        trained on an answer a later one disputes, even in part."""
        out = np.zeros(len(arrays), bool)
        later = self.later_answers[self.parts.index(part)] if self.later_answers else {}
        if not later or not len(arrays):
            return out
        names = np.array(self.labels, object)[self.label_indices(part)[arrays.label]]
        events = ~np.isin(names, self.background_labels)
        folded = np.array([spelling_key(n) for n in names], object)
        starts = arrays.start_s.astype(np.float64)
        ends = starts + self.feature_config.patch_seconds
        sources = np.asarray(arrays.source, object)
        for source, answers in later.items():
            rows = np.flatnonzero(sources == source)   # each answer tested on its recording only
            if not len(rows):
                continue
            hit = np.zeros(len(rows), bool)
            for start, end, label, is_event in answers:
                overlap = (starts[rows] < end - OVERLAP_EPSILON_S) & \
                    (ends[rows] > start + OVERLAP_EPSILON_S)
                if is_event:        # a later event: this time is not background
                    hit |= overlap & ~events[rows]
                else:               # a later `no`: this time holds no event of `label`
                    hit |= overlap & events[rows] & (True if label is None else
                                                     folded[rows] == spelling_key(label))
            out[rows] = hit
        return out

    def label_indices(self, part: data.Prepared) -> np.ndarray:
        """[part's label index] → index into `labels` (`_merged`: the same name, else the
        same in any case)."""
        folded = [spelling_key(l) for l in self.labels]
        return np.array([self.labels.index(l) if l in self.labels else folded.index(spelling_key(l))
                         for l in part.labels], np.int64)

    def as_prepared(self, annotated: bool) -> data.Prepared:
        """One `data.Prepared` of the merged labels, for code that reads no shards
        (calibration): `annotated` says whether its recordings are long annotated ones."""
        return dataclasses.replace(self.parts[0], labels=self.labels,
                                   background_labels=self.background_labels,
                                   data_hash=self.data_hash, annotated=annotated)


def open_training_data(roots) -> TrainingData:
    """`data.open_prepared` of each folder (a str: one), checked to hold the same features;
    UserError for a folder given twice or holding other features than the first."""
    roots = [roots] if isinstance(roots, str) else list(roots)
    if len(set(roots)) != len(roots):
        twice = next(r for r in roots if roots.count(r) > 1)
        raise UserError(f"--data {twice} is given twice; give each prepared folder once")
    parts = tuple(data.open_prepared(r) for r in roots)
    first = parts[0]
    for p in parts[1:]:
        if p.feature_config.hash() != first.feature_config.hash():
            raise UserError(
                f"--data {p.root} holds other features ({p.feature_config.hash()}) than --data "
                f"{first.root} ({first.feature_config.hash()}); prepare it with the same "
                "--base and feature flags as the first folder")
    return TrainingData(parts, _merged(p.labels for p in parts),
                        _merged(p.background_labels for p in parts), _later_answers(parts))


# overlaps shorter than this (float rounding of window starts) are no overlap
OVERLAP_EPSILON_S = 1e-6


def _answers(part: data.Prepared) -> dict:
    """{source: [(start_s, end_s, label or None, is_event)]}: every span a folder of verdicts
    answered (`data.read_reviewed`, every split): events of their label, and negatives
    (label None: of every label)."""
    out = {}
    for r in data.read_reviewed(part, data.SPLITS):
        out.setdefault(r.source, []).extend(
            [(e.start_s, e.end_s, e.label, True) for e in r.events] +
            [(n[0], n[1], n[2], False) for n in r.negatives])
    return out


def _later_answers(parts) -> tuple:
    """Per folder, the answers (`_answers`) of every folder after it in `--data` order."""
    out, after = [], {}
    for part in reversed(parts):
        out.append({source: tuple(a) for source, a in after.items()})
        for source, answers in _answers(part).items():
            after.setdefault(source, []).extend(answers)
    return tuple(reversed(out))


# two answers whose spans overlap by at least this share of the shorter are about one item
# (the review loop's reviewer says yes at the same share of a true event)
SAME_ITEM_OVERLAP = 0.5


def contradicts(earlier: tuple, later: tuple) -> bool:
    """Whether two answers on one recording, (start_s, end_s, label or None, is_event), answer
    one item otherwise: their spans overlap by at least SAME_ITEM_OVERLAP of the shorter,
    and one is an event of a label the other says is not there (a negative of that label,
    or of every label: None). Neighbours that overlap less can both hold (an event in the
    first, not reaching far into the second)."""
    shorter = min(earlier[1] - earlier[0], later[1] - later[0])
    overlap = min(earlier[1], later[1]) - max(earlier[0], later[0])
    if earlier[3] == later[3] or overlap <= OVERLAP_EPSILON_S or \
            overlap < SAME_ITEM_OVERLAP * shorter - OVERLAP_EPSILON_S:
        return False
    event, negative = (earlier, later) if earlier[3] else (later, earlier)
    return negative[2] is None or spelling_key(negative[2]) == spelling_key(event[2])


def _merged(label_lists) -> tuple:
    """Labels in order of first appearance; a label an earlier folder spells in another
    case is that folder's (`prepare` gives each folder one spelling per label)."""
    out = []
    for labels in label_lists:
        earlier = {spelling_key(l) for l in out}
        out += [l for l in labels if l not in out and spelling_key(l) not in earlier]
    return tuple(out)


def read_splits(training: TrainingData, splits=("train", "validation")) -> list:
    """Each folder's splits as read from its shards: [(part, {split: data.SplitArrays})],
    label indices still the folder's own (bottleneck cache entries are per folder)."""
    return [(p, {s: data.read_split(p, s, required=False) for s in splits})
            for p in training.parts]


def merged_split(training: TrainingData, per_part: list, split: str) -> data.SplitArrays:
    """One split of every folder (`read_splits`' output), rows in folder order, labels mapped
    onto the merged list."""
    arrays = [(p, s[split]) for p, s in per_part]
    if len(arrays) == 1:
        return arrays[0][1]
    n = len(training.labels)
    kept = [training.kept_rows(p, a) for p, a in arrays]   # once per folder, for every column

    def cat(get):
        values = [get(p, a) for p, a in arrays]
        return None if any(v is None for v in values) else np.concatenate(
            [v[k] for v, k in zip(values, kept)])

    def multi_hot(p, a):
        out = np.zeros((len(a), n), np.float32)
        out[:, training.label_indices(p)] = a.multi_hot
        return out
    return data.SplitArrays(
        cat(lambda p, a: a.log_mel), cat(lambda p, a: training.label_indices(p)[a.label]),
        cat(lambda p, a: a.recording_key), cat(lambda p, a: a.source),
        cat(lambda p, a: a.start_s), cat(lambda p, a: a.waveform), cat(multi_hot))


def merged_features(training: TrainingData, per_part: list, features: list) -> dict:
    """Cached features of each folder ([{split: (features, labels, keys)}], rows as in
    `per_part`, `read_splits`' output) → one {split: (features, labels, keys)}, rows in
    folder order, labels merged, the rows `kept_rows` leaves out left out."""
    if len(per_part) == 1:
        return features[0]
    out = {}
    for split in features[0]:
        kept = [training.kept_rows(p, s[split]) for p, s in per_part]
        rows = [(p, [a[k] for a in f[split]])
                for (p, _), f, k in zip(per_part, features, kept)]
        out[split] = (np.concatenate([r[0] for _, r in rows]),
                      np.concatenate([training.label_indices(p)[r[1]] for p, r in rows]),
                      np.concatenate([r[2] for _, r in rows]))
    return out


def calibration_recordings(training: TrainingData, split: str) -> tuple:
    """→ (annotated?, recordings) to calibrate event post-processing on: the fully annotated
    recordings (or stretches) of `split` in every folder that has them; without any, the
    labeled clips of `split` in the clip folders. Folders of verdicts (`--annotated-extent
    selections`) have none: their unselected time may hold events no one marked."""
    long = [r for p in training.parts if p.annotated for r in data.read_recordings(p, split)]
    if long:
        return True, _first_of_each(long)
    return False, _first_of_each([r for p in training.parts if not p.annotated
                                  for r in data.read_recordings(p, split)])


def reviewed_recordings(training: TrainingData) -> list:
    """The reviewed spans (`data.read_reviewed`, train and validation stretches) of every
    folder of verdicts, gathered per recording across folders (rounds of review of one
    corpus), sorted by key; an answer a later folder contradicts (`contradicts`) is left
    out."""
    by_source = {}
    for i, p in enumerate(training.parts):
        later = training.later_answers[i] if training.later_answers else {}
        for r in data.read_reviewed(p):
            after = later.get(r.source, ())
            r = dataclasses.replace(
                r, events=tuple(e for e in r.events if not any(
                    contradicts((e.start_s, e.end_s, e.label, True), a) for a in after)),
                negatives=tuple(n for n in r.negatives if not any(
                    contradicts((n[0], n[1], n[2], False), a) for a in after)))
            if r.source in by_source:
                seen = by_source[r.source]
                r = dataclasses.replace(seen, events=tuple(sorted(set(seen.events + r.events))),
                                        negatives=tuple(sorted(set(seen.negatives + r.negatives),
                                                               key=data.negative_order)))
            by_source[r.source] = r
    return sorted((r for r in by_source.values() if r.events or r.negatives),
                  key=lambda r: (r.key, r.source))


def _first_of_each(recordings: list) -> list:
    """Recordings sorted by (key, offset), one per (key, offset): a stretch prepared into two
    folders counts once, as its first folder holds it."""
    seen, out = set(), []
    for r in recordings:
        if (r.key, r.offset_s) not in seen:
            seen.add((r.key, r.offset_s))
            out.append(r)
    return sorted(out, key=lambda r: (r.key, r.offset_s))
