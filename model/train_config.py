"""What one `earmark train` run is asked for: `TrainConfig` (the command's flags, with their
defaults), the strategy and head names, augmentation settings. No TensorFlow here, so the
command can build its flags (`earmark train --help`) without importing it; `model.train`
does the training."""
import dataclasses
from typing import Optional

from earmark.model import image_bases
from earmark.model.errors import UserError

STRATEGIES = ("auto", "frozen", "finetune", "scratch")   # auto: `model.train.choose_strategy`
DEFAULT_TIME_BUDGET_MINUTES = 5.0  # auto's budget: a laptop's coffee break
# heads on cached embeddings: `dropout` (`head.build_head` trained with `_fit`, the head that
# finetune and scratch train through the base), `linear` | `mlp` (`model.head_search`, chosen
# on validation by clip log loss), or `auto`: the dropout head and head search's choice, and
# the one kept whose calibrated detector finds the validation recordings' events best (the
# number the user gets: clip loss alone ranked heads against events, docs/train.md)
HEADS = ("auto", "linear", "mlp", "dropout")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """SpecAugment masks (widths in frames / mel bins) and mixup (Beta(alpha, alpha))."""
    spec_augment: bool = False
    time_mask_frames: int = 16
    freq_mask_bins: int = 8
    mixup: bool = False
    mixup_alpha: float = 0.2

    @property
    def enabled(self) -> bool:
        return self.spec_augment or self.mixup


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; the defaults are the `earmark train` flags'."""
    data_dir: str | tuple              # folder written by `earmark prepare`, or several
    #                                    trained on together (`model.training_data`)
    model_dir: str                     # where model.keras (or head.keras) + model.json go
    base: str = image_bases.DEFAULT_BASE     # image base or embedding base (`audio_bases.SPECS`)
    weights: Optional[str] = None      # image: imagenet (None) | none | file; embedding:
    #                                    pretrained (None) | none
    strategy: str = "auto"             # one of STRATEGIES
    head: str = "auto"                 # one of HEADS (frozen, on the bottleneck cache)
    input_px: int = 0                  # image base input size; 0: the base's default
    pooling: str = "multiscale"        # image_bases.POOLINGS
    epochs: int = 40                   # head epochs (through the base: all epochs)
    finetune_epochs: int = 10          # epochs with the top blocks unfrozen
    time_budget_s: float = DEFAULT_TIME_BUDGET_MINUTES * 60  # auto: fine-tune only when it fits (`model.train`)
    finetune_blocks: int = 2           # top blocks of the base unfrozen in finetune
    batch_size: int = 32
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    dropout_rate: float = 0.3
    patience_epochs: int = 8           # early stopping: epochs without improvement
    class_weight: str = "balanced"     # balanced | none
    augment: AugmentConfig = AugmentConfig()
    multi_label: bool = False          # sigmoid outputs, one per label
    seed: int = 0
    cache_dir: str = image_bases.CACHE_ROOT  # bottleneck and weights cache
    use_cache: bool = True             # frozen: train the head on the bottleneck cache
    progress_bars: bool = True         # Keras' per-epoch progress bars
    int8: Optional[bool] = None        # ship model_int8.tflite; None: image bases yes, others no


def parse_augment(text: str) -> AugmentConfig:
    parts = {p.strip() for p in text.lower().split(",") if p.strip()} - {"none"}
    unknown = parts - {"specaugment", "mixup"}
    if unknown:
        raise UserError(f"--augment: unknown {sorted(unknown)}; use none, specaugment, mixup "
                        "or specaugment,mixup")
    return AugmentConfig(spec_augment="specaugment" in parts, mixup="mixup" in parts)
