"""`resample_quality` is left out of the FeatureConfig hash because the soxr qualities it
allows change log-mel patches by less than a tested bound. This is that test, on real audio
(44.1/48 kHz FLAC → 16 kHz), against the exact path (soxr HQ).

Measured (benchmarks/frontend_throughput.py, sonicpi 165 files + snoring 800 files):
max |log-mel(MQ) - log-mel(HQ)| = 0.0225 (mean 0.0003); LQ 3.4 and QQ 6.0, far outside.
"""
import glob
import os

import numpy as np
import pytest

from earmark.model import audio
from earmark.model.features import FeatureConfig
from earmark.model.frontend import Frontend
from tests.shared import shared_path

# Max abs difference in log(mel + 0.01) allowed between a quality and HQ.
LOG_MEL_TOLERANCE = 0.05
WITHIN_TOLERANCE = ("MQ", "VHQ")
OUTSIDE_TOLERANCE = ("LQ", "QQ")


@pytest.fixture(scope="module")
def recordings():
    """All sonicpi files (0.02-30 s, mono and stereo, 16/24-bit) and 100 snoring clips."""
    files = sorted(glob.glob(os.path.join(shared_path("data", "sonicpi"), "*.flac")))
    snoring = shared_path("data", "snoring")
    files += sorted(glob.glob(os.path.join(snoring, "*", "*.flac")))[::8]
    assert len(files) > 200
    out = []
    for path in files:
        with open(path, "rb") as f:
            out.append((path, f.read()))
    return out


@pytest.fixture(scope="module")
def frontend():
    return Frontend(FeatureConfig())


def log_mel_all(recordings, frontend, quality):
    out = []
    for path, data in recordings:
        wave, _, _ = audio.load_waveform(data, 16000, path, quality)
        out.append(frontend.patches(wave)[0])
    return out


@pytest.fixture(scope="module")
def exact(recordings, frontend):
    return log_mel_all(recordings, frontend, "HQ")


def max_deviation(recordings, a_list, b_list):
    """Largest |a - b| over all patches of all recordings, and the recording it is in."""
    worst, where = 0.0, None
    for (path, _), a, b in zip(recordings, a_list, b_list):
        assert a.shape == b.shape, f"{path}: {a.shape} vs {b.shape}"
        d = float(np.abs(a - b).max()) if a.size else 0.0
        if d > worst:
            worst, where = d, path
    return worst, where


@pytest.mark.parametrize("quality", WITHIN_TOLERANCE)
def test_quality_within_log_mel_tolerance_of_hq(recordings, frontend, exact, quality):
    worst, where = max_deviation(recordings, log_mel_all(recordings, frontend, quality), exact)
    assert worst <= LOG_MEL_TOLERANCE, f"{quality}: max |Δ log-mel| {worst:.4f} at {where}"


@pytest.mark.parametrize("quality", OUTSIDE_TOLERANCE)
def test_cheap_qualities_are_outside_the_tolerance(recordings, frontend, exact, quality):
    """LQ/QQ cut the band below 7.5 kHz or alias: patches differ far beyond the bound, so
    they must not share a feature-config hash with HQ (see the report on issue 2)."""
    worst, _ = max_deviation(recordings, log_mel_all(recordings, frontend, quality), exact)
    assert worst > 10 * LOG_MEL_TOLERANCE


@pytest.mark.parametrize("quality", OUTSIDE_TOLERANCE)
def test_feature_config_refuses_qualities_outside_the_tolerance(quality):
    with pytest.raises(ValueError):
        FeatureConfig(resample_quality=quality)
