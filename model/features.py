"""FeatureConfig: the one source of truth for the audio → patch recipe.

Two representations: `log_mel` (default; image bases: a patch is a log-mel spectrogram of
`patch_seconds`) and `waveform` (audio-pretrained embedding bases, which compute their own
frontend: a patch is the raw mono window of `patch_seconds` at `sample_rate_hz`;
the mel fields are then unused). `embedding_base_config` builds the latter from a base's
spec.

Saved beside prepared data (`features.json`) and inside exported models, so that
training, evaluation and labeling cut and transform audio identically.
Defaults follow the AudioSet/VGGish recipe.
"""
import dataclasses
import hashlib
import json
import math

# Fields that change the numbers in a patch. `patch_hop_seconds` only changes how
# densely patches are taken (0.96 s for training data, 0.48 s for labeling), and
# `resample_quality` changes numbers below the tested tolerance, so neither enters
# the hash: a model trained on one is valid on the other.
_HASHED_FIELDS = (
    "sample_rate_hz", "window_seconds", "hop_seconds", "mel_bins",
    "mel_min_hz", "mel_max_hz", "log_offset", "patch_seconds",
)

REPRESENTATIONS = ("log_mel", "waveform")

# soxr qualities whose log-mel stays within 0.05 of HQ on real audio
# (tests/test_resample_tolerance.py); LQ and QQ move it by up to 6 and are not offered.
RESAMPLE_QUALITIES = ("HQ", "VHQ", "MQ")

LOG_MEL_LABELING_HOP_SECONDS = 0.48  # labeling hop of log-mel models (half of 0.96 s)


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the log-mel frontend; units are in the names."""
    sample_rate_hz: int = 16000
    window_seconds: float = 0.025
    hop_seconds: float = 0.010
    mel_bins: int = 64
    mel_min_hz: float = 125.0
    mel_max_hz: float = 7500.0
    log_offset: float = 0.01
    patch_seconds: float = 0.96
    patch_hop_seconds: float = 0.96
    resample_quality: str = "HQ"
    representation: str = "log_mel"

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}")
        if self.sample_rate_hz <= 0 or self.mel_bins <= 0:
            raise ValueError("sample_rate_hz and mel_bins must be positive")
        if not 0 <= self.mel_min_hz < self.mel_max_hz <= self.sample_rate_hz / 2:
            raise ValueError("need 0 <= mel_min_hz < mel_max_hz <= sample_rate_hz / 2")
        if self.patch_frames < 1 or self.patch_hop_frames < 1:
            raise ValueError("patch_seconds and patch_hop_seconds must hold at least one hop")
        if self.resample_quality not in RESAMPLE_QUALITIES:
            raise ValueError(f"resample_quality must be one of {RESAMPLE_QUALITIES}")

    # Derived sizes, all integers.
    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate_hz))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate_hz))

    @property
    def fft_length(self) -> int:
        return 2 ** int(math.ceil(math.log2(self.window_samples)))

    @property
    def patch_frames(self) -> int:
        return int(round(self.patch_seconds / self.hop_seconds))

    @property
    def patch_hop_frames(self) -> int:
        return int(round(self.patch_hop_seconds / self.hop_seconds))

    @property
    def is_waveform(self) -> bool:
        return self.representation == "waveform"

    @property
    def patch_samples(self) -> int:
        """Waveform samples that yield exactly one patch (the model's input window)."""
        if self.is_waveform:
            return int(round(self.patch_seconds * self.sample_rate_hz))
        return (self.patch_frames - 1) * self.hop_samples + self.window_samples

    @property
    def patch_hop_samples(self) -> int:
        if self.is_waveform:
            return int(round(self.patch_hop_seconds * self.sample_rate_hz))
        return self.patch_hop_frames * self.hop_samples

    @property
    def patch_shape(self) -> tuple:
        """[frames, mel_bins] for log-mel patches, [samples] for waveform windows."""
        if self.is_waveform:
            return (self.patch_samples,)
        return (self.patch_frames, self.mel_bins)

    def with_patch_hop(self, patch_hop_seconds: float) -> "FeatureConfig":
        return dataclasses.replace(self, patch_hop_seconds=patch_hop_seconds)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FeatureConfig fields: {sorted(unknown)}")
        return cls(**d)

    def hash(self) -> str:
        """Stable 16-hex-digit id of everything that changes the patch values."""
        fields = {k: getattr(self, k) for k in _HASHED_FIELDS}
        if self.is_waveform:  # log-mel hashes stay as they were before this field existed
            fields["representation"] = self.representation
        canon = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def default_labeling_hop_seconds(config: FeatureConfig) -> float:
    """The labeling hop of a model trained on `config` when its model card names none (format-1
    files): half a waveform window, or `LOG_MEL_LABELING_HOP_SECONDS`."""
    return config.patch_seconds / 2 if config.is_waveform else LOG_MEL_LABELING_HOP_SECONDS


def embedding_base_config(spec, patch_hop_seconds: float = None,
                          resample_quality: str = "HQ") -> FeatureConfig:
    """The waveform FeatureConfig of an embedding base (`model.audio_bases.SPECS[name]`):
    its sample rate and window; patches every half window unless `patch_hop_seconds`."""
    return FeatureConfig(sample_rate_hz=spec.sample_rate_hz, patch_seconds=spec.window_seconds,
                         patch_hop_seconds=patch_hop_seconds or spec.window_seconds / 2,
                         resample_quality=resample_quality, representation="waveform")
