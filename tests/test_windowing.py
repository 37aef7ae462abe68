"""One windowing rule: prepare, evaluate and label cut a recording into the same windows."""
import collections
import os

import numpy as np
import pytest

from earmark.model import evaluate, windowing
from earmark.model.features import FeatureConfig
from earmark.pipelines import chunks, prepare
from tests.audio_fixtures import tone, write
from tests.prepared import read_examples

HOP_S = 0.48
# (file, seconds, rate): shorter than a window, exactly one, one sample more, a tail of
# half a hop, odd frame counts at 44.1 / 22.05 / 48 kHz
AWKWARD = [("short.wav", 0.3, 16000), ("one.wav", 15600 / 16000, 16000),
           ("one_more.wav", 15601 / 16000, 16000), ("seven.flac", 7.0, 48000),
           ("odd_44k.wav", 7.3 + 1 / 44100, 44100), ("odd_22k.flac", 3.1234, 22050)]


def label_starts(path, config):
    """Window starts as `earmark label` plans them: the header only, chunks of whole windows."""
    with open(path, "rb") as f:
        info = chunks.file_info(f, path, config.sample_rate_hz, config.patch_samples,
                                config.patch_hop_samples)
    planned = chunks.plan_chunks(info, 4)
    read = []
    for c in planned:  # each chunk opens the file anew, as the pipeline's workers do
        with open(path, "rb") as f:
            read.append(chunks.read_chunk_windows(f, info, c, config.sample_rate_hz,
                                                  config.patch_samples, config.patch_hop_samples))
    assert sum(len(w) for w in read) == info.num_windows
    first = [c.first_window + k for c in planned for k in range(c.num_windows)]
    return np.array(first) * config.patch_hop_samples / config.sample_rate_hz, np.concatenate(read)


def test_prepare_evaluate_and_label_cut_the_same_windows(tmp_path):
    recordings, tables = tmp_path / "recordings", tmp_path / "tables"
    recordings.mkdir(), tables.mkdir()
    for name, seconds, rate in AWKWARD:
        fmt = "FLAC" if name.endswith(".flac") else "WAV"
        write(str(recordings / name), tone(seconds, rate, 2 if rate == 44100 else 1), rate, fmt)
        # an empty Raven table: annotated, no events, so every window is written as background
        (tables / (name.rsplit(".", 1)[0] + ".selections.txt")).write_text(
            "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation\n")
    out = str(tmp_path / "prepared")
    prepare.main(["--input", str(recordings), "--annotations", str(tables), "--output", out,
                  "--patch-hop-seconds", str(HOP_S), "--split", "100/0/0"])
    prepared = collections.defaultdict(list)
    for row in read_examples(out, "train"):
        prepared[row["recording_key"]].append(round(float(row["start_s"]), 4))
    config = FeatureConfig(patch_hop_seconds=HOP_S)
    for name, seconds, rate in AWKWARD:
        path = str(recordings / name)
        starts_label, windows_label = label_starts(path, config)
        windows_eval, duration = evaluate.recording_windows(path, config)
        starts_eval = np.arange(len(windows_eval)) * HOP_S
        assert sorted(prepared[name]) == list(np.round(starts_eval, 4)) == list(np.round(starts_label, 4)), name
        # windows reach the end and no further: the last one starts before the end
        window_s = config.patch_samples / config.sample_rate_hz
        assert starts_eval[-1] < duration and starts_eval[-1] + window_s >= duration - 1e-6
        # and hold the same audio (label decodes chunk by chunk: resampler edges differ slightly)
        assert np.abs(windows_eval - windows_label).max() < (1e-6 if rate == 16000 else 0.02), name


@pytest.mark.parametrize("frames,rate", [(44101, 44100), (336013, 48000), (12345, 22050), (99999, 44100)])
def test_resampled_length_is_what_whole_file_decoding_gives(frames, rate):
    from earmark.model import audio
    out = audio.resample(np.zeros(frames, np.float32), rate, 16000)
    assert len(out) == audio.resampled_length(frames, rate, 16000)


def test_count_windows_and_frame_windows_agree():
    for n in (1, 15599, 15600, 15601, 30960, 30961, 100000):
        w = windowing.frame_windows(np.ones(n, np.float32), 15600, 7680)
        assert len(w) == windowing.count_windows(n, 15600, 7680)
        assert w[-1].sum() == n - (len(w) - 1) * 7680 if n > 15600 else w[0].sum() == n
