"""`earmark report`, thumbnails: a segment's audio excerpt (decoded via model/audio.py,
seeking when the format can) → the models' own log-mel frontend → a PNG. TensorFlow is
imported on the first thumbnail only."""
import os

import numpy as np

from earmark import report_html as h
from earmark.model.features import FeatureConfig
from earmark.model.segments import Segment

CONTEXT_S = 0.5              # audio shown either side of a segment in its thumbnail
MAX_THUMBNAIL_S = 12.0       # longer segments show their first seconds only
MAX_FULL_DECODE_BYTES = 256 << 20   # files that cannot seek are decoded whole up to this


def log_mel(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Mono waveform → [frames, mel_bins] with the frontend the models use
    (`model.frontend.log_mel`); TensorFlow is imported here, on the first thumbnail only."""
    import tensorflow as tf
    from earmark.model.frontend import log_mel as frontend_log_mel
    waveform = np.asarray(waveform, np.float32)
    if len(waveform) < config.window_samples:  # at least one frame
        waveform = np.pad(waveform, (0, config.window_samples - len(waveform)))
    return frontend_log_mel(tf.constant(waveform), config).numpy()


def read_excerpt(path: str, start_s: float, end_s: float, config: FeatureConfig) -> np.ndarray:
    """Mono audio of [start_s, end_s) at the config's rate (`read_native_excerpt`,
    resampled)."""
    from earmark.model import audio
    samples, rate = read_native_excerpt(path, start_s, end_s)
    return audio.resample(samples, rate, config.sample_rate_hz, config.resample_quality)


def read_native_excerpt(path: str, start_s: float, end_s: float):
    """(mono float32 audio of [start_s, end_s), the file's own rate), via model/audio.py;
    only those frames are read when the format can seek."""
    import soundfile as sf
    from earmark.model import audio
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            f.seek(int(start_s * rate))
            samples = f.read(int((end_s - start_s) * rate), dtype="float32", always_2d=True)
    except Exception:
        if os.path.getsize(path) > MAX_FULL_DECODE_BYTES:
            raise
        with open(path, "rb") as f:
            samples, rate = audio.decode(f.read(), path)
        samples = samples[int(start_s * rate):int(end_s * rate)]
    return audio.to_mono(samples), rate


def thumbnail(path: str, seg: Segment, duration_s: float, config: FeatureConfig, color: str):
    """(PNG bytes, caption note or "") of a segment's log-mel with CONTEXT_S either side."""
    t0 = max(0.0, seg.start_s - CONTEXT_S)
    t1 = min(max(duration_s, seg.end_s), seg.end_s + CONTEXT_S)
    clipped = t1 - t0 > MAX_THUMBNAIL_S
    t1 = min(t1, t0 + MAX_THUMBNAIL_S)
    mel = log_mel(read_excerpt(path, t0, t1, config), config)
    png = h.spectrogram_png(mel, t1 - t0, (seg.start_s - t0, seg.end_s - t0), color)
    return png, (f"first {MAX_THUMBNAIL_S:g} s shown" if clipped else "")
