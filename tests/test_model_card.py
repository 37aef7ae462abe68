"""The model card (`model.model_card`): model.json written and read through one dataclass,
format 1 upgraded, and every rejection a one-line UserError. No training: cards by hand."""
import json

import pytest

from earmark.model import model_files
from earmark.model.errors import UserError
from earmark.model.features import LOG_MEL_LABELING_HOP_SECONDS, FeatureConfig, embedding_base_config
from earmark.model.model_card import FORMAT_VERSION, ModelCard, upgrade
from earmark.model.segments import PostProcessing, model_post_processing


def pp(threshold=0.5, **settings) -> dict:
    return PostProcessing(threshold, **settings).to_dict()


def card_dict(**changes) -> dict:
    """A format-2 model.json content of a two-label log-mel model."""
    d = {"format_version": FORMAT_VERSION, "labels": ["noise", "snore"],
         "feature_config": FeatureConfig().to_dict(), "labeling_hop_seconds": 0.48,
         "post_processing": {"noise": pp(0.7), "snore": pp(0.6, smoothing_windows=3,
                                                             extend_s=0.25)},
         "background_labels": ["noise"], "activation": "softmax",
         "base": {"name": "vgg16"}, "weights": {"checksum": "ab" * 32},
         "head": {"num_classes": 2}, "calibration": {"source": "validation clips"}}
    return {**d, **changes}


def v1_dict(**changes) -> dict:
    """A format-1 model.json content (as `earmark train` wrote before the card)."""
    d = {"format_version": 1, "labels": ["noise", "snore"],
         "feature_config": FeatureConfig().to_dict(), "feature_config_hash": "0" * 16,
         "input": {"name": "waveform", "shape": [None, 15600], "sample_rate_hz": 16000,
                   "dtype": "float32", "default_hop_seconds": 0.96},
         "output": {"activation": "sigmoid", "labels": ["noise", "snore"]},
         "thresholds": {"noise": 0.7, "snore": 0.6},
         "post_processing": {"snore": {"threshold": 0.6, "smoothing_windows": 3,
                                       "min_duration_s": 0.5, "max_gap_s": 0.25}},
         "background_labels": ["noise"], "calibration": {"source": "validation clips"},
         "base": {"name": "vgg16"}}
    return {**d, **changes}


def test_round_trip():
    card = ModelCard.from_dict(card_dict(), "m")
    assert card.to_dict() == card_dict()
    assert ModelCard.from_dict(card.to_dict(), "m") == card
    assert card.thresholds == {"noise": 0.7, "snore": 0.6}
    assert card.labeling_config.patch_hop_seconds == 0.48
    assert card.post_processing["snore"].extend_s == 0.25


def test_a_card_from_before_the_low_threshold_loads_without_hysteresis(tmp_path):
    """A format-2 model.json written before `low_threshold` existed: each label's low
    threshold is its threshold (no hysteresis), and the card writes it from then on."""
    d = card_dict()
    for settings in d["post_processing"].values():
        del settings["low_threshold"]
    (tmp_path / model_files.META_FILE).write_text(json.dumps(d))
    meta = model_files.read_local_meta(str(tmp_path))
    assert {l: (p["threshold"], p["low_threshold"]) for l, p in meta["post_processing"].items()} \
        == {"noise": (0.7, 0.7), "snore": (0.6, 0.6)}
    assert meta == card_dict()


def test_unset_optional_keys_are_left_out():
    d = card_dict()
    for key in ("base", "weights", "head", "calibration"):
        del d[key]
    assert ModelCard.from_dict(d, "m").to_dict() == d


def test_read_local_card_and_meta(tmp_path):
    (tmp_path / model_files.META_FILE).write_text(json.dumps(v1_dict()))
    card = model_files.read_local_card(str(tmp_path))
    assert model_files.read_local_meta(str(tmp_path)) == card.to_dict()
    assert card.to_dict()["format_version"] == FORMAT_VERSION


def test_format_1_is_upgraded():
    d = ModelCard.from_dict(v1_dict(), "m").to_dict()
    for gone in ("thresholds", "input", "output", "feature_config_hash"):
        assert gone not in d
    assert d["format_version"] == 2 and d["labeling_hop_seconds"] == 0.96
    assert d["activation"] == "sigmoid" and d["base"] == {"name": "vgg16"}
    # the calibrated label keeps its settings (extend_s: none, from before it existed);
    # the background label its threshold with default settings
    assert d["post_processing"] == {"noise": pp(0.7), "snore": pp(
        0.6, smoothing_windows=3, min_duration_s=0.5, max_gap_s=0.25)}
    sources = {l: s for l, (_, s) in model_post_processing(d).items()}
    assert set(sources["snore"].values()) == {"model"}
    assert sources["noise"] == {**dict.fromkeys(PostProcessing.FIELDS, "default"),
                                "threshold": "model"}


def test_format_1_before_calibration_and_without_a_hop():
    old = v1_dict(post_processing=None, background_labels=None, calibration=None,
                  input={"name": "waveform"})
    old = {k: v for k, v in old.items() if v is not None}
    del old["format_version"]  # the very first files: no version at all
    card = ModelCard.from_dict(old, "m")
    assert card.labeling_hop_seconds == LOG_MEL_LABELING_HOP_SECONDS
    assert card.thresholds == {"noise": 0.7, "snore": 0.6} and card.background_labels == ()
    assert card.post_processing["snore"] == PostProcessing(0.6)
    waveform = embedding_base_config(type("Spec", (), {"sample_rate_hz": 16000,
                                                       "window_seconds": 3.0})())
    card = ModelCard.from_dict({**old, "feature_config": waveform.to_dict()}, "m")
    assert card.labeling_hop_seconds == 1.5  # half the window


def test_upgrade_leaves_the_current_format_alone():
    d = card_dict()
    assert upgrade(d, "m") is d


def one_line(d) -> str:
    with pytest.raises(UserError) as e:
        ModelCard.from_dict(d, "m")
    message = str(e.value)
    assert "\n" not in message and message.startswith("--model m: model.json")
    return message


def test_a_newer_format_is_refused_in_one_line():
    message = one_line(card_dict(format_version=3))
    assert "is format 3, which this earmark does not read (formats 1 and 2)" in message
    assert "upgrade earmark or re-run 'earmark train'" in message


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


def _post(label, **fields):
    return lambda d: {**d, "post_processing": {
        **d["post_processing"], label: {**d["post_processing"][label], **fields}}}


@pytest.mark.parametrize("change,message", [
    (lambda d: [1, 2], "model.json is a JSON list, not an object"),
    (_without("labels"), "model.json has no 'labels'"),
    (lambda d: {**d, "labels": []}, "'labels' must be a non-empty list of label names"),
    (lambda d: {**d, "labels": ["snore", "snore"]}, "'labels' names 'snore' twice"),
    (_without("feature_config"), "model.json has no 'feature_config'"),
    (lambda d: {**d, "feature_config": 3}, "'feature_config' must be an object"),
    (lambda d: {**d, "feature_config": {"mel_bins": 0}}, "'feature_config' is not valid"),
    (lambda d: {**d, "colour": "blue"}, "'colour' is not a key of format 2"),
    (lambda d: {**d, "base": "vgg16"}, "'base' must be an object"),
    (lambda d: {**d, "head": {"num_classes": 3}},
     "'labels' lists 2 labels but the model has 3 outputs (head.num_classes)"),
    (lambda d: {**d, "background_labels": "noise"}, "'background_labels' must be a list"),
    (lambda d: {**d, "background_labels": ["silence"]},
     "'background_labels' names 'silence', which is not one of its labels"),
    (_without("labeling_hop_seconds"), "'labeling_hop_seconds' is None; it must be a number > 0"),
    (lambda d: {**d, "labeling_hop_seconds": 0}, "'labeling_hop_seconds' is 0; it must be"),
    (lambda d: {**d, "activation": "relu"}, "'activation' is 'relu'; it must be one of"),
    (lambda d: {**d, "model_id": 7}, "'model_id' must be a string"),
    (lambda d: {**d, "post_processing": []}, "'post_processing' must be an object"),
    (lambda d: {**d, "post_processing": {**d["post_processing"], "cough": pp()}},
     "'post_processing' names 'cough', which is not one of its labels"),
    (lambda d: {**d, "post_processing": {"snore": d["post_processing"]["snore"]}},
     "'post_processing.noise' must be an object with threshold, smoothing_windows, "
     "min_duration_s, max_gap_s, extend_s"),
    (_post("snore", threshold="high"),
     "'post_processing.snore.threshold' is 'high'; it must be a number in [0, 1]"),
    (_post("snore", threshold=1.5), "'post_processing.snore.threshold' is 1.5"),
    (_post("snore", smoothing_windows=0),
     "'post_processing.snore.smoothing_windows' is 0; it must be a whole number >= 1"),
    (_post("snore", smoothing_windows=2.0), "smoothing_windows' is 2.0"),
    (_post("snore", min_duration_s=-1), "'post_processing.snore.min_duration_s' is -1; it must "
                                        "be a number >= 0"),
    (_post("snore", max_gap_s=float("nan")), "'post_processing.snore.max_gap_s' is nan"),
    (_post("snore", extend_s=True), "'post_processing.snore.extend_s' is True"),
    (_post("snore", low_threshold=0.65), "'post_processing.snore.low_threshold' is 0.65; it "
                                         "must be at most the threshold (0.6)"),
])
def test_each_rule_is_one_line(change, message):
    assert message in one_line(change(card_dict()))


@pytest.mark.parametrize("change,message", [
    (lambda d: {**d, "thresholds": {"snore": "high"}},
     "'thresholds.snore' is 'high'; it must be a number in [0, 1]"),
    (lambda d: {**d, "thresholds": {"cough": 0.5}},
     "'thresholds' names 'cough', which is not one of its labels"),
    (lambda d: {**d, "thresholds": [0.5]}, "'thresholds' must be an object"),
    (lambda d: {**d, "input": {"default_hop_seconds": -1}},
     "'input.default_hop_seconds' is -1; it must be a number > 0"),
    (lambda d: {**d, "post_processing": {"snore": {"threshold": 0.6}}},
     "'post_processing.snore' must be an object with"),
])
def test_format_1_rules_are_one_line(change, message):
    assert message in one_line(change(v1_dict()))


def test_post_processing_rules_are_defined_once():
    assert PostProcessing.FIELDS == tuple(PostProcessing.RULES)
    assert PostProcessing.problem(pp()) is None
    assert PostProcessing.problem({"threshold": 0.5}) == ("smoothing_windows", "is missing")
    with pytest.raises(ValueError):
        PostProcessing.from_dict({"threshold": 0.5, "smoothing_windows": 1,
                                  "min_duration_s": 0.0, "max_gap_s": 0.0})  # no extend_s


def test_a_save_stopped_half_way_never_leaves_new_weights_under_an_old_card(tiny_model, tmp_path):
    """Re-training into a model dir: the earlier model.json (and the evaluation of the
    earlier model) go first, the new model.json comes last; a save that stops in between
    leaves a dir that refuses to load ("no model.json"), never one that loads new weights
    with the earlier thresholds."""
    import shutil
    from earmark.model import export
    model_dir = str(tmp_path / "m")
    shutil.copytree(tiny_model, model_dir)
    (tmp_path / "m" / model_files.EVALUATION_FILE).write_text("{}")
    model, meta = export.load(model_dir)
    card = ModelCard.from_dict(meta, model_dir)
    with pytest.raises(TypeError):   # history.json cannot be written: the save stops there
        export.save(model_dir, model, card, history={"loss": object()})
    assert not (tmp_path / "m" / model_files.EVALUATION_FILE).exists()
    with pytest.raises(UserError, match="no model.json there"):
        export.load(model_dir)
    export.save(model_dir, model, card, history={"loss": [1.0]})
    assert export.load(model_dir)[1]["labels"] == meta["labels"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == \
        sorted([model_files.META_FILE, model_files.MODEL_FILE, model_files.HISTORY_FILE])
