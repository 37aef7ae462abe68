"""Cut a recording into chunks of whole windows, and read one chunk's windows without
decoding the rest of the file. Pure functions plus soundfile reads on a seekable file.

Windows sit on one grid per file: window k covers 16-kHz samples [k·hop, k·hop + window).
A chunk is a run of consecutive windows; neighbouring chunks overlap by the audio of one
window, so no window is lost or computed twice at a boundary.
"""
import dataclasses
import math

import numpy as np

from earmark.model import audio
from earmark.model.windowing import count_windows, frame_windows


@dataclasses.dataclass(frozen=True)
class Chunk:
    path: str
    first_window: int
    num_windows: int


@dataclasses.dataclass(frozen=True)
class FileInfo:
    path: str
    native_rate_hz: int
    native_frames: int
    channels: int
    duration_s: float
    num_windows: int


def plan_chunks(info: FileInfo, windows_per_chunk: int) -> list:
    return [Chunk(info.path, k, min(windows_per_chunk, info.num_windows - k))
            for k in range(0, info.num_windows, windows_per_chunk)]


def file_info(fileobj, path: str, target_hz: int, window_samples: int, hop_samples: int) -> FileInfo:
    """Read only the header of a seekable audio file."""
    import soundfile as sf
    try:
        with sf.SoundFile(fileobj) as f:
            rate, frames, channels = int(f.samplerate), int(f.frames), int(f.channels)
    except Exception as e:
        raise audio.decode_error(e) from None
    if frames <= 0:
        raise audio.AudioError("no_samples", "the file holds no audio frames")
    if not audio.MIN_SAMPLE_RATE_HZ <= rate <= audio.MAX_SAMPLE_RATE_HZ:
        raise audio.AudioError("unsupported_sample_rate", f"{rate} Hz")
    n16 = audio.resampled_length(frames, rate, target_hz)
    return FileInfo(path, rate, frames, channels, frames / rate,
                    count_windows(n16, window_samples, hop_samples))


def read_chunk_windows(fileobj, info: FileInfo, chunk: Chunk, target_hz: int,
                       window_samples: int, hop_samples: int, quality: str = "HQ",
                       margin_s: float = 0.05) -> np.ndarray:
    """Decode just this chunk's audio (plus a resampler margin) → [windows, window_samples]."""
    return read_windows_at(fileobj, info, chunk.first_window * hop_samples, chunk.num_windows,
                           target_hz, window_samples, hop_samples, quality, margin_s)


def read_windows_at(fileobj, info: FileInfo, start16: int, num_windows: int, target_hz: int,
                    window_samples: int, hop_samples: int, quality: str = "HQ",
                    margin_s: float = 0.05) -> np.ndarray:
    """`num_windows` windows every `hop_samples` from sample `start16` (at `target_hz`),
    decoding just their audio plus a resampler margin → [windows, window_samples]; past the
    end of the file, zeros. A chunk's windows (`read_chunk_windows`), or those of any span
    (`earmark search`'s queries): the same samples for the same start."""
    import soundfile as sf
    rate = info.native_rate_hz
    g = math.gcd(rate, target_hz)
    block_native, block_target = rate // g, target_hz // g  # exact rate-aligned blocks
    end16 = start16 + (num_windows - 1) * hop_samples + window_samples
    margin16 = int(margin_s * target_hz)
    # native read range, aligned so its first sample maps to an integer 16-kHz sample
    read_start_blocks = max(0, (start16 - margin16) // block_target)
    read_start = read_start_blocks * block_native
    read_end = min(info.native_frames, int(math.ceil((end16 + margin16) * rate / target_hz)))
    with sf.SoundFile(fileobj) as f:
        f.seek(read_start)
        samples = f.read(max(0, read_end - read_start), dtype="float32", always_2d=True)
    if not np.all(np.isfinite(samples)):
        raise audio.AudioError("non_finite_samples", "NaN or infinity in the samples")
    mono = audio.resample(audio.to_mono(samples), rate, target_hz, quality)
    offset = start16 - read_start_blocks * block_target  # 16-kHz samples before start16
    piece = mono[offset:offset + (end16 - start16)]
    if len(piece) < end16 - start16:
        piece = np.pad(piece, (0, end16 - start16 - len(piece)))
    # the piece spans exactly the chunk's windows: the one rule frames it (pads nothing)
    return frame_windows(piece, window_samples, hop_samples)
