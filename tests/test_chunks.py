"""Chunked reading gives the same windows as decoding the whole file."""
import io

import numpy as np
import pytest

from earmark.model import audio
from earmark.model.export import windows as whole_file_windows
from earmark.model.features import FeatureConfig
from earmark.pipelines.chunks import count_windows, file_info, plan_chunks, read_chunk_windows
from tests.audio_fixtures import encode

C = FeatureConfig(patch_hop_seconds=0.48)


@pytest.mark.parametrize("rate,seconds,per_chunk", [(44100, 13.3, 7), (16000, 9.0, 5),
                                                    (48000, 0.3, 4), (22050, 6.1, 1)])
def test_chunks_cover_every_window_once_and_match_whole_file(rate, seconds, per_chunk):
    rng = np.random.default_rng(0)
    data = encode((0.3 * rng.standard_normal((int(rate * seconds), 2))).astype(np.float32),
                  rate, "FLAC", "PCM_24")
    info = file_info(io.BytesIO(data), "x.flac", 16000, C.patch_samples, C.patch_hop_samples)
    chunks = plan_chunks(info, per_chunk)
    assert sum(c.num_windows for c in chunks) == info.num_windows
    assert [c.first_window for c in chunks] == list(range(0, info.num_windows, per_chunk))
    got = np.concatenate([read_chunk_windows(io.BytesIO(data), info, c, 16000, C.patch_samples,
                                             C.patch_hop_samples) for c in chunks])
    whole, _, _ = audio.load_waveform(data, 16000, "x.flac")
    want = whole_file_windows(np.pad(whole, (0, C.patch_hop_samples)), C)[:info.num_windows]
    assert got.shape == (info.num_windows, C.patch_samples)
    inner = slice(200, -200) if rate != 16000 else slice(None)
    assert np.abs(got[:, inner] - want[:, inner]).max() < 2e-3


def test_window_count_pads_the_tail():
    assert count_windows(100, 15600, 7680) == 1
    assert count_windows(15600, 15600, 7680) == 1
    assert count_windows(15601, 15600, 7680) == 2
