"""`model.memory_budget`: batch sizes from a memory budget (pure, no TensorFlow)."""
import pytest

from earmark.model import memory_budget as mb
from earmark.model.features import FeatureConfig, LOG_MEL_LABELING_HOP_SECONDS

MB = 10 ** 6
GB = 10 ** 9


def _batch(budget, requested=None, max_batch=128, window=192_000, activation=30 * MB, fixed=1 * GB):
    return mb.batch_size_for(budget, window, activation, fixed, requested=requested,
                             max_batch=max_batch)


def test_budget_respected():
    for budget in (1.1 * GB, 1.5 * GB, 2 * GB, 3.3 * GB):
        b = _batch(budget)
        per = 192_000 + 30 * MB
        assert 1 * GB + b * per <= budget < 1 * GB + (b + 1) * per or b == 128


def test_at_least_one():
    assert _batch(0.5 * GB) == 1          # the model alone is over the budget
    assert _batch(1 * GB) == 1
    assert _batch(0) == 1
    assert _batch(1.5 * GB, activation=10 ** 12) == 1


def test_requested_is_a_ceiling():
    assert _batch(100 * GB) == 128                    # max_batch by default
    assert _batch(100 * GB, requested=16) == 16       # a --batch-size is never raised
    assert _batch(100 * GB, requested=512) == 512     # ... and may pass max_batch
    assert _batch(1.5 * GB, requested=128) == _batch(1.5 * GB) < 128   # the budget lowers it
    assert _batch(100 * GB, max_batch=32) == 32
    with pytest.raises(ValueError):
        _batch(1.5 * GB, requested=0)


def test_monotone_in_the_budget():
    sizes = [_batch(budget * MB) for budget in range(0, 8000, 37)]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 128
    costs = [_batch(1.5 * GB, activation=a * MB) for a in range(0, 200, 3)]
    assert costs == sorted(costs, reverse=True)


def test_no_cost_per_window_takes_the_ceiling():
    assert mb.batch_size_for(1, 0, 0, 10 * GB) == 128


def _meta(base, config=FeatureConfig()):
    return {"feature_config": config.to_dict(), "labeling_hop_seconds": LOG_MEL_LABELING_HOP_SECONDS,
            "base": base}


def _waveform(rate, seconds=3.0):
    return FeatureConfig(sample_rate_hz=rate, patch_seconds=seconds, patch_hop_seconds=seconds / 2,
                         representation="waveform")


def test_every_builtin_base_has_measured_figures():
    from earmark.model import base_registry
    assert set(base_registry.names()) <= set(mb.MEASURED)
    for m in mb.MEASURED.values():
        assert m.model_fixed_bytes > 0 and m.per_window_activation_bytes >= 0


def test_window_cost_from_model_json():
    musicnn = mb.window_cost(_meta({"name": "musicnn_msd", "kind": "embedding"}, _waveform(16000)))
    assert musicnn.measured and musicnn.window_input_bytes == 4 * 48000
    image = mb.window_cost(_meta({"name": "inception_v3", "input_px": 96}))
    assert image.window_input_bytes == 4 * FeatureConfig().patch_samples
    bigger = mb.window_cost(_meta({"name": "inception_v3", "input_px": 192}))
    assert bigger.per_window_activation_bytes == pytest.approx(4 * image.per_window_activation_bytes, 1e-6)
    assert bigger.fixed_bytes == image.fixed_bytes
    unknown = mb.window_cost(_meta({"name": "someone_elses_base"}))
    assert not unknown.measured
    assert unknown.per_window_activation_bytes == max(
        m.per_window_activation_bytes for m in mb.MEASURED.values())


def test_ensemble_sums_its_members():
    members = [{"name": "birdnet"}, {"name": "musicnn_msd"}]
    both = mb.window_cost(_meta({"name": "birdnet+musicnn_msd", "family": "ensemble",
                                 "members": members}, _waveform(48000)))
    one = [mb.MEASURED[m["name"]] for m in members]
    assert both.per_window_activation_bytes == sum(m.per_window_activation_bytes for m in one)
    # BirdNET's own batch costed at its largest unless told
    birdnet = mb.MEASURED["birdnet"]
    assert both.inner_batch_size == max(birdnet.inner_batches) == both.min_batch
    assert both.fixed_bytes == (mb.RUNTIME_BYTES + mb.LABEL_PIPELINE_BYTES
                                + sum(m.model_fixed_bytes for m in one)
                                + (both.inner_batch_size - 1) * birdnet.per_inner_window_bytes)


def test_birdnet_runs_its_own_batch_at_what_the_budget_allows():
    """BirdNET's interpreter keeps every tensor of its own batch: the budget picks that batch
    first (the largest that fits with as many label windows), then label's batch."""
    birdnet = _meta({"name": "birdnet", "kind": "embedding"}, _waveform(48000))
    sizes = mb.MEASURED["birdnet"].inner_batches
    assert mb.inner_batch_size(birdnet, 100 * GB) == max(sizes)
    assert mb.inner_batch_size(birdnet, 0) == min(sizes)            # never below its smallest
    for budget in (1.2 * GB, 1.5 * GB, 1.8 * GB, 2.5 * GB):
        inner = mb.inner_batch_size(birdnet, budget)
        batch = mb.label_batch_size(birdnet, budget)
        assert inner <= batch                       # fewer label windows would save nothing
        assert mb.expected_peak_bytes(birdnet, batch, inner) <= budget
        bigger = [s for s in sizes if s > inner]
        assert not bigger or mb.expected_peak_bytes(birdnet, min(bigger), min(bigger)) > budget
    assert mb.inner_batch_size(_meta({"name": "inception_v3", "input_px": 96})) is None


def test_label_batch_size_defaults():
    """The default budget keeps the measured label peak of every built-in base within it,
    wherever batching can: musicnn far below the old 128, the image default at 128."""
    musicnn = _meta({"name": "musicnn_msd", "kind": "embedding"}, _waveform(16000))
    image = _meta({"name": "inception_v3", "input_px": 96})
    b = mb.label_batch_size(musicnn)
    assert 1 <= b < 32
    assert mb.expected_peak_bytes(musicnn, b) <= mb.DEFAULT_BUDGET_BYTES
    assert mb.label_batch_size(musicnn, 100 * GB) == 128
    assert mb.label_batch_size(musicnn, 100 * GB, requested=16) == 16
    assert mb.label_batch_size(image) == 128


@pytest.mark.parametrize("text, size", [("1.5GB", 1_500_000_000), ("1.5 gb", 1_500_000_000),
                                        ("800M", 800_000_000), ("2GiB", 2 * 2 ** 30),
                                        ("512MiB", 512 * 2 ** 20), ("1500000000", 1_500_000_000)])
def test_parse_bytes(text, size):
    assert mb.parse_bytes(text) == size


@pytest.mark.parametrize("text", ["", "GB", "1.5TB", "-1GB", "0", "lots"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError):
        mb.parse_bytes(text)
