"""Which split (train / validation / test) each stretch of audio belongs to: whole
recordings, or time blocks within annotated recordings when a corpus has too few of them
for every split to get one.

    split_of("night1.wav", (0.8, 0.1, 0.1))                 # "train": stable, anywhere
    split_by_for(keys, fractions)                            # "recording" | "time"
    block_splits("night1.wav", 1200.0, events, fractions)    # [(start_s, end_s, split)]

Three annotated nights hashed whole rarely give the validation split one (0.9³ = 73 % of
the time it gets none), and then event post-processing is calibrated on the training
nights, optimistically. Split by time instead: each recording is cut into `BLOCK_S`
blocks, every edge moved out of the events it would cut (no event is split in two), and
its blocks are divided between the splits in the split fractions (largest remainder; which
blocks go where is drawn by a seeded hash of the recording's key): every recording of a
few blocks or more gives the validation split some of its time. A window that crosses from
one split's time into another's is left out of both (`prepare` counts it as
`split_boundary`).
"""
import hashlib
import math

from earmark.model.data_files import SPLITS

BLOCK_S = 60.0                    # nominal block length; edges move out of events
SPLIT_BY = ("auto", "recording", "time")
SPLIT_BOUNDARY = "split_boundary"  # a window left out: it crosses from one split into another


def _unit(text: str) -> float:
    """A stable number in [0, 1) from `text` (sha256), the same on every machine."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0 ** 64


def split_of(key: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """Stable split of a recording key: same key, same split, on every machine."""
    u, edge = _unit("earmark-split:" + key), 0.0
    for split, fraction in zip(SPLITS, fractions):
        edge += fraction
        if u < edge:
            return split
    return SPLITS[-1]


def split_by_for(keys, fractions, requested: str = "auto") -> str:
    """`requested` unless "auto": "recording" when hashing the annotated recordings `keys`
    whole gives the training and the validation split (where it has a share) at least one
    of them each, else "time". The test split is the user's to check on: it may stay
    empty, as it may with clips."""
    if requested != "auto":
        return requested
    got = {split_of(k, fractions) for k in keys}
    wanted = {s for s, f in zip(SPLITS[:2], fractions) if f > 0}
    return "recording" if wanted <= got else "time"


def _merged(events) -> list:
    """Events' (start_s, end_s) spans, overlapping or touching ones merged, sorted."""
    out = []
    for start, end in sorted((e.start_s, e.end_s) for e in events):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def block_edges(duration_s: float, events=(), block_s: float = BLOCK_S) -> list:
    """[0, e1, …, duration_s]: a block every `block_s` (a last block shorter than half of
    it joins the one before), each inner edge moved to the nearer end of an event it falls
    inside, so that no event straddles two blocks."""
    count = max(1, int(math.floor(duration_s / block_s + 0.5)))
    spans = _merged(events)
    edges = [0.0]
    for k in range(1, count):
        t = k * block_s
        for start, end in spans:
            if start < t < end:
                t = start if t - start <= end - t else end
                break
        if edges[-1] < t < duration_s:
            edges.append(t)
    return edges + [duration_s]


def block_counts(blocks: int, fractions) -> list:
    """`blocks` divided in `fractions` by the largest remainder (ties: the earlier split)."""
    quotas = [blocks * f / sum(fractions) for f in fractions]
    counts = [int(math.floor(q)) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in by_remainder[:blocks - sum(counts)]:
        counts[i] += 1
    return counts


def block_splits(key: str, duration_s: float, events=(), fractions=(0.8, 0.1, 0.1),
                 block_s: float = BLOCK_S) -> list:
    """One annotated recording's time → [(start_s, end_s, split)], consecutive blocks of one
    split joined: its blocks (`block_edges`) divided in `fractions` (`block_counts`), the
    blocks of each split drawn by a hash of `key` and the block's index. A recording of one
    block (under 1.5 `block_s`) goes whole to the split its key hashes to (`split_of`), as
    when splitting by recording: the largest remainder would give it to train every time."""
    edges = block_edges(duration_s, events, block_s)
    if len(edges) == 2:
        return [(0.0, duration_s, split_of(key, fractions))]
    order = sorted(range(len(edges) - 1), key=lambda i: _unit(f"earmark-split-block:{key}:{i}"))
    split_of_block, taken = {}, 0
    for split, count in zip(SPLITS, block_counts(len(order), fractions)):
        for i in order[taken:taken + count]:
            split_of_block[i] = split
        taken += count
    spans = []
    for i in range(len(edges) - 1):
        if spans and spans[-1][2] == split_of_block[i]:
            spans[-1][1] = edges[i + 1]
        else:
            spans.append([edges[i], edges[i + 1], split_of_block[i]])
    return [tuple(s) for s in spans]


def window_split(spans, start_s: float, end_s: float):
    """The split of the span (`block_splits`) holding the window [start_s, end_s], or None
    when it crosses from one split's time into another's."""
    for a, b, split in spans:
        if a - 1e-9 <= start_s and end_s <= b + 1e-9:
            return split
    return None
