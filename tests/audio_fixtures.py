"""Audio files generated in the tests: every format, bit depth, rate and channel count."""
import io

import numpy as np
import soundfile as sf


def tone(seconds: float, rate_hz: int, channels: int = 1, freq_hz: float = 440.0,
         amplitude: float = 0.5) -> np.ndarray:
    """[frames, channels] float32 sine; channel c is scaled by 1 / (c + 1)."""
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    mono = amplitude * np.sin(2 * np.pi * freq_hz * t)
    return np.stack([mono / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def encode(samples: np.ndarray, rate_hz: int, fmt: str, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate_hz, format=fmt, subtype=subtype)
    return buf.getvalue()


def write(path, samples, rate_hz, fmt="WAV", subtype="PCM_16"):
    with open(path, "wb") as f:
        f.write(encode(samples, rate_hz, fmt, subtype))
    return path


def band_noise(seconds: float, rate_hz: int, band_hz, rng, amplitude: float = 0.3) -> np.ndarray:
    """Mono white noise band-passed to `band_hz` (low, high) by zeroing FFT bins."""
    n = int(round(seconds * rate_hz))
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / rate_hz)
    spectrum[(freqs < band_hz[0]) | (freqs > band_hz[1])] = 0
    x = np.fft.irfft(spectrum, n)
    return (amplitude * x / np.abs(x).max()).astype(np.float32)
