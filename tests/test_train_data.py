"""Tests of `model.data` on the tiny synthetic prepared sets of `tests.fixtures`."""
import numpy as np
import pytest
import tensorflow as tf

from earmark.model import data
from tests.fixtures import make_prepared


def test_read_split_round_trips_examples(tmp_path):
    root = make_prepared(str(tmp_path / "p"), n_classes=3, per_class=(5, 2, 1),
                         patches_per_recording=2)
    prepared = data.open_prepared(root)
    assert prepared.labels == ("class_0", "class_1", "class_2")
    train = data.read_split(prepared, "train")
    assert train.log_mel.shape == (30, 96, 64)
    assert sorted(np.bincount(train.label)) == [10, 10, 10]
    assert len(set(train.recording_key)) == 15


def test_data_hash_changes_with_content(tmp_path):
    a = data.open_prepared(make_prepared(str(tmp_path / "a")))
    b = data.open_prepared(make_prepared(str(tmp_path / "b"), per_class=(13, 4, 4)))
    assert a.data_hash != b.data_hash
    assert a.data_hash == data.open_prepared(str(tmp_path / "a")).data_hash


def test_missing_prepared_folder_is_a_user_error(tmp_path):
    from earmark.model.errors import UserError
    with pytest.raises(UserError, match="features.json"):
        data.open_prepared(str(tmp_path))


def test_spec_augment_masks_a_band_and_a_block():
    x = tf.zeros((96, 64)) + 5.0
    cfg = data.AugmentConfig(spec_augment=True, time_mask_frames=10, freq_mask_bins=6)
    tf.random.set_seed(1)
    masked = [data.spec_augment(x, -1.0, cfg).numpy() == -1.0 for _ in range(20)]
    # every mask is whole rows/columns (a time block and a mel band), never scattered cells
    for m in masked:
        rows, cols = m.all(axis=1), m.all(axis=0)
        assert (m == (rows[:, None] | cols[None, :])).all()
    assert any(m.any() for m in masked)


def test_mixup_keeps_label_mass_and_mixes():
    x = tf.constant(np.stack([np.zeros((96, 64)), np.ones((96, 64))]).astype(np.float32))
    y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    tf.random.set_seed(3)
    mx, my = data.mixup(x, y, 0.4)
    np.testing.assert_allclose(my.numpy().sum(axis=1), 1.0, atol=1e-6)
    # the mixed images are mixed exactly like their labels
    np.testing.assert_allclose(mx.numpy()[:, 0, 0], my.numpy()[:, 1], atol=1e-6)


def test_a_folder_name_with_pattern_characters_is_data_not_a_pattern(tmp_path):
    """A prepared folder without stats.json's shard list is listed, never globbed: `[a]`
    and `*` in its name find its own shards, and another folder's never mix in."""
    odd = make_prepared(str(tmp_path / "night [a] *"))
    make_prepared(str(tmp_path / "night a x"), per_class=(3, 1, 1))   # what `[a] *` would match
    prepared = data.open_prepared(odd)
    assert [s.rsplit("/", 1)[0] for s in data.split_files(odd, "train")] == [odd]
    assert len(data.read_split(prepared, "train")) == 24


def test_folders_trained_together_merge_labels_by_name(tmp_path):
    from earmark.model import training_data
    a = make_prepared(str(tmp_path / "a"), labels=["x", "y"], per_class=(2, 1, 0))
    b = make_prepared(str(tmp_path / "b"), labels=["z", "y"], per_class=(1, 1, 0))
    both = training_data.open_training_data([a, b])
    assert both.labels == ("x", "y", "z")
    per_part = training_data.read_splits(both)
    train = training_data.merged_split(both, per_part, "train")
    names = [both.labels[i] for i in train.label]
    # a's rows, then b's, each row keeping its own label's name
    assert names == ["x", "x", "y", "y", "y", "z"]
    assert [k.split("/")[0] for k in train.recording_key] == names
    assert np.array_equal(train.multi_hot.argmax(axis=1), train.label)
    one = training_data.open_training_data(a)
    assert one.data_hash == data.open_prepared(a).data_hash != both.data_hash


def test_a_label_another_folder_spells_in_another_case_is_the_same_label(tmp_path):
    """Verdicts that say `Snore` beside starting clips of `snore`: one label, the first
    folder's spelling, never two classes training as each other's negatives."""
    from earmark.model import training_data
    a = make_prepared(str(tmp_path / "a"), labels=["snore", "background"], per_class=(2, 1, 0))
    b = make_prepared(str(tmp_path / "b"), labels=["Snore", "BACKGROUND"], per_class=(1, 1, 0))
    both = training_data.open_training_data([a, b])
    assert both.labels == ("snore", "background")
    assert both.respelled(both.parts[1]) == {"Snore": "snore", "BACKGROUND": "background"}
    train = training_data.merged_split(both, training_data.read_splits(both), "train")
    names = [both.labels[i] for i in train.label]
    assert sorted(names) == ["background"] * 3 + ["snore"] * 3
    assert names == [k.split("/")[0].lower() for k in train.recording_key]   # its own label


def test_no_verdicts_on_one_label_are_not_negatives_for_labels_another_folder_adds(tmp_path):
    """A folder of verdicts whose `no` answers rule out x only, beside a clip folder that also
    labels y: its background windows are left out of the merged rows (cache rows and shard
    rows alike); with x the only label they stay."""
    import json
    from earmark.model import train as train_module, training_data
    clips = make_prepared(str(tmp_path / "clips"), labels=["x", "y"], per_class=(2, 1, 0))
    verdicts = make_prepared(str(tmp_path / "verdicts"), labels=["background", "x"],
                             per_class=(3, 1, 0))
    path = tmp_path / "verdicts" / data.FEATURES_FILE
    meta = json.loads(path.read_text())
    meta.update(background_labels=["background"],
                annotations={"annotated_extent": "selections", "event_labels": ["x"]})
    path.write_text(json.dumps(meta))
    both = training_data.open_training_data([clips, verdicts])
    assert both.event_labels == ("x", "y") and both.labels == ("x", "y", "background")
    assert both.unruled_labels(both.parts[1]) == ("y",) and both.unruled_labels(both.parts[0]) == ()
    per_part = training_data.read_splits(both)
    train = training_data.merged_split(both, per_part, "train")
    assert [both.labels[i] for i in train.label] == ["x", "x", "y", "y", "x", "x", "x"]
    assert len(train.log_mel) == len(train.multi_hot) == len(train.recording_key) == 7
    cached = [(p, {"train": (np.arange(len(s["train"]))[:, None].astype(np.float32),
                             s["train"].label, s["train"].recording_key)}) for p, s in per_part]
    features, labels, keys = training_data.merged_features(
        both, per_part, [c for _, c in cached])["train"]
    assert [both.labels[i] for i in labels] == ["x", "x", "y", "y", "x", "x", "x"]
    assert list(keys) == list(train.recording_key) and features[:, 0].tolist() == [0, 1, 2, 3, 3, 4, 5]
    warned = []
    train_module._read_splits(both, warned.append)
    assert warned == [f"--data {verdicts}: 4 windows of negative selections (`no` verdicts) left "
                      "out of training: they rule out x only, and this model also learns y; "
                      "answer for those labels there to use them"]
    x_only = make_prepared(str(tmp_path / "x_clips"), labels=["x"], per_class=(2, 1, 0))
    alone = training_data.open_training_data([x_only, verdicts])
    assert len(training_data.merged_split(alone, training_data.read_splits(alone), "train")) == 8


def test_folders_of_other_features_or_given_twice_are_user_errors(tmp_path):
    import json
    from earmark.model import training_data
    from earmark.model.errors import UserError
    a = make_prepared(str(tmp_path / "a"))
    b = make_prepared(str(tmp_path / "b"))
    with pytest.raises(UserError, match="given twice"):
        training_data.open_training_data([a, a])
    path = tmp_path / "b" / data.FEATURES_FILE
    meta = json.loads(path.read_text())
    meta["feature_config"]["mel_bins"] = 32
    path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="other features"):
        training_data.open_training_data([a, b])


def test_reviewed_spans_of_rounds_of_one_corpus_are_gathered_per_recording(tmp_path):
    """Two folders of verdicts on one recording (two rounds of review), and a clip folder:
    calibration gets the recording once with every span of the train and validation
    stretches; a test stretch's, and the clip folder's recordings, are not among them. A
    negative keeps the label it rules out (None: a folder prepared before labels were kept
    there, whose negatives ruled out every label)."""
    import json
    from earmark.model import training_data
    from earmark.model.events import Event
    roots = [make_prepared(str(tmp_path / n), labels=["x"], per_class=(1, 1, 0))
             for n in ("clips", "round_1", "round_2")]
    night = {"key": "n.wav", "source": "/corpus/n.wav", "duration_s": 600.0,
             "annotated_extent": "selections"}
    stretches = {"round_1": [({"split": "train", "span_s": [0.0, 300.0]}, [[10, 11, "x"]], [[20, 21]]),
                             ({"split": "test", "span_s": [300.0, 600.0]}, [[400, 401, "x"]], [])],
                 "round_2": [({"split": "validation", "span_s": [0.0, 300.0]}, [[10, 11, "x"]],
                              [[50, 51, "x"]])]}
    for name, rows in stretches.items():
        with open(tmp_path / name / data.RECORDINGS_FILE, "w") as f:
            for extra, events, negatives in rows:
                f.write(json.dumps({**night, **extra, "events": events,
                                    "negatives": negatives}) + "\n")
    got = training_data.reviewed_recordings(training_data.open_training_data(roots))
    assert [(r.key, r.source, r.events, r.negatives) for r in got] == [
        ("n.wav", "/corpus/n.wav", (Event(10, 11, "x"),), ((20, 21, None), (50, 51, "x")))]
    assert training_data.reviewed_recordings(training_data.open_training_data(roots[0])) == []
