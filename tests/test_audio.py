"""Decoding every format / bit depth / rate / channel count against the samples written."""
import numpy as np
import pytest

from earmark.model import audio
from earmark.model.features import FeatureConfig
from earmark.model.frontend import Frontend
from tests.audio_fixtures import encode, tone

LOSSLESS = [  # (format, subtype, extension, max abs error of a full-scale-0.5 sine)
    ("WAV", "PCM_U8", ".wav", 1 / 128 + 1e-6),
    ("WAV", "PCM_16", ".wav", 1 / 32768 + 1e-7),
    ("WAV", "PCM_24", ".wav", 1 / 2 ** 23 + 1e-8),
    ("WAV", "PCM_32", ".wav", 1e-7),
    ("WAV", "FLOAT", ".wav", 0.0),
    ("WAV", "DOUBLE", ".wav", 1e-7),
    ("FLAC", "PCM_16", ".flac", 1 / 32768 + 1e-7),
    ("FLAC", "PCM_24", ".flac", 1 / 2 ** 23 + 1e-8),
]
LOSSY = [("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3")]


@pytest.mark.parametrize("fmt,subtype,ext,tolerance", LOSSLESS)
@pytest.mark.parametrize("channels", [1, 2])
def test_lossless_decode_matches_written_samples(fmt, subtype, ext, tolerance, channels):
    written = tone(0.5, 44100, channels)
    samples, rate = audio.decode(encode(written, 44100, fmt, subtype), "x" + ext)
    assert rate == 44100 and samples.dtype == np.float32
    assert samples.shape == written.shape
    assert np.abs(samples - written).max() <= tolerance


@pytest.mark.parametrize("fmt,subtype,ext", LOSSY)
def test_lossy_decode_keeps_the_tone(fmt, subtype, ext):
    written = tone(3.0, 44100, 2)
    samples, rate = audio.decode(encode(written, 44100, fmt, subtype), "x" + ext)
    assert rate == 44100 and samples.shape[1] == 2
    assert abs(len(samples) - len(written)) < 4096  # encoder padding/priming
    # compare log-mel patches of the first channel, the way the features see the audio
    c, fe = FeatureConfig(), Frontend(FeatureConfig())
    ref, _, _ = fe.patches(audio.resample(written[:, 0], 44100, 16000))
    got, _, _ = fe.patches(audio.resample(samples[:, 0], 44100, 16000))
    strong = ref[1] > np.log(c.log_offset) + 3  # bands that carry the tone, away from the
    assert strong.sum() > 96                      # encoder's priming at the start
    assert np.abs(ref[1][strong] - got[1][strong]).max() < 0.5


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 192000])
def test_resample_any_rate_to_16k(rate):
    mono = audio.to_mono(tone(1.0, rate, 1))
    out = audio.resample(mono, rate, 16000)
    expected = tone(1.0, 16000, 1)[:, 0]
    assert abs(len(out) - 16000) <= 1
    inner = slice(400, 15600)  # skip filter edges
    assert np.abs(out[inner] - expected[inner]).max() < 2e-3


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_downmix_averages_channels(channels):
    written = tone(0.2, 16000, channels)
    samples, _ = audio.decode(encode(written, 16000, "WAV", "FLOAT"), "x.wav")
    mono = audio.to_mono(samples)
    np.testing.assert_allclose(mono, written.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", ".wav"), ("FLAC", "PCM_24", ".flac"),
                                             ("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3")])
def test_tfio_decoder_agrees_with_soundfile(fmt, subtype, ext):
    data = encode(tone(0.5, 44100, 2), 44100, fmt, subtype)
    a, rate_a = audio.decode(data, "x" + ext, decoder="soundfile")
    b, rate_b = audio.decode(data, "x" + ext, decoder="tfio")
    n = min(len(a), len(b))
    assert rate_a == rate_b and a.shape[1] == b.shape[1] and abs(len(a) - len(b)) < 2048
    assert np.abs(a[:n] - b[:n]).max() < 1e-4


@pytest.mark.parametrize("data,reason", [
    (b"", "empty_file"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "decode_error"),
    (np.random.default_rng(0).bytes(4000), "decode_error"),
    (b"this is a text file, not audio\n" * 20, "decode_error"),
])
def test_undecodable_bytes_raise_audio_error_with_reason(data, reason):
    with pytest.raises(audio.AudioError) as e:
        audio.decode(data, "x.wav")
    assert e.value.reason == reason


def test_nan_samples_and_rates_out_of_range_are_rejected():
    nan = tone(0.1, 16000)
    nan[10] = np.nan
    with pytest.raises(audio.AudioError, match="non_finite_samples"):
        audio.decode(encode(nan, 16000, "WAV", "FLOAT"), "x.wav")
    with pytest.raises(audio.AudioError, match="unsupported_sample_rate"):
        audio.decode(encode(tone(0.1, 4000), 4000, "WAV", "PCM_16"), "x.wav")
