"""`model.head_search`: linear | mlp | auto heads on cached embeddings, chosen on validation."""

import dataclasses

import keras
import numpy as np
import pytest

from earmark.model import head_search
from earmark.model.head_search import SearchConfig, search_head

# small grids keep the unit tests fast; the search itself is what is under test
FAST = SearchConfig(linear_l2_grid=(1e-2, 1e-3, 1e-4),
                    mlp_grid=((0.25, 1e-4, 3e-3), (0.1, 1e-5, 1e-2)), mlp_hidden=64,
                    mlp_max_epochs=150, mlp_patience=15)


def _blobs(n, d=20, k=3, seed=0, shift=5.0):
    """Linearly separable Gaussian blobs, features far from zero mean / unit scale."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(k, d)) * 2
    y = rng.integers(0, k, n)
    x = (centers[y] + rng.normal(size=(n, d))) * 7 + shift
    return x.astype(np.float32), y


def _xor(n, seed=0, noise_dims=6):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1, 1, size=(n, 2))
    y = ((xy[:, 0] > 0) ^ (xy[:, 1] > 0)).astype(np.int64)
    x = np.concatenate([xy, rng.normal(size=(n, noise_dims)) * 0.3], axis=1)
    return x.astype(np.float32), y


def _acc(model, x, y):
    return float((model.predict(x, verbose=0).argmax(1) == y).mean())


def test_separable_data_chooses_linear_and_scores_high():
    x, y = _blobs(400)
    xv, yv = _blobs(120, seed=1)
    xt, yt = _blobs(200, seed=2)
    result = search_head(x, y, xv, yv, num_classes=3, head="auto", seed=0, config=FAST)
    assert result.report["head"] == "linear", result.report["chosen"]
    assert _acc(result.model, xt, yt) >= 0.97
    assert result.model.output_shape == (None, 3)
    families = [c["family"] for c in result.report["candidates"]]
    assert families.count("linear") >= 1 and families.count("mlp") == 2
    assert all(c["validation"]["unit"] == "window" for c in result.report["candidates"])
    assert result.report["seconds"] > 0


def test_xor_mlp_beats_linear_and_auto_picks_it():
    x, y = _xor(800)
    xv, yv = _xor(300, seed=1)
    xt, yt = _xor(400, seed=2)
    lin = search_head(x, y, xv, yv, num_classes=2, head="linear", seed=0, config=FAST)
    mlp = search_head(x, y, xv, yv, num_classes=2, head="mlp", seed=0, config=FAST)
    auto = search_head(x, y, xv, yv, num_classes=2, head="auto", seed=0, config=FAST)
    assert _acc(lin.model, xt, yt) < 0.7
    assert _acc(mlp.model, xt, yt) > 0.9
    assert auto.report["head"] == "mlp"
    assert _acc(auto.model, xt, yt) > 0.9


def test_clip_level_selection_groups_windows_by_recording_key():
    x, y = _blobs(300)
    xv, yv = _blobs(90, seed=1)
    keys = np.array([f"clip{i // 3}" for i in range(len(yv))])
    yv = yv[(np.arange(len(yv)) // 3) * 3]          # every clip's windows share its label
    result = search_head(x, y, xv, yv, num_classes=3, head="linear", val_keys=keys, seed=0,
                         config=FAST)
    c = result.report["candidates"][0]["validation"]
    assert c["unit"] == "clip" and c["n"] == 30
    # windows of one key with different labels (an annotated recording): window-level
    mixed = search_head(x, y, xv, np.roll(yv, 1), num_classes=3, head="linear",
                        val_keys=keys, seed=0, config=FAST)
    assert mixed.report["candidates"][0]["validation"]["unit"] == "window"


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_standardization_is_saved_inside_the_head(tmp_path, head):
    x, y = _blobs(300, shift=40.0)
    xv, yv = _blobs(90, seed=1, shift=40.0)
    result = search_head(x, y, xv, yv, num_classes=3, head=head, seed=0, config=FAST)
    norm = result.model.get_layer("standardize")
    assert np.allclose(np.ravel(norm.mean), x.mean(0), rtol=1e-4, atol=1e-3)
    path = str(tmp_path / "head.keras")
    result.model.save(path)
    loaded = keras.saving.load_model(path)
    xt, _ = _blobs(50, seed=3, shift=40.0)
    a = result.model.predict(xt, verbose=0)
    b = loaded.predict(xt, verbose=0)
    assert np.abs(a - b).max() <= 1e-5


@pytest.mark.parametrize("head", ["linear", "mlp", "auto"])
def test_deterministic_given_a_seed(head):
    x, y = _xor(300)
    xv, yv = _xor(100, seed=1)
    xt, _ = _xor(50, seed=2)
    runs = [search_head(x, y, xv, yv, num_classes=2, head=head, seed=3, config=FAST)
            for _ in range(2)]
    a, b = (r.model.predict(xt, verbose=0) for r in runs)
    assert np.array_equal(a, b)
    strip = lambda r: [{k: v for k, v in c.items() if k != "seconds"}  # noqa: E731
                       for c in r.report["candidates"]]
    assert strip(runs[0]) == strip(runs[1])


def test_multi_label_sample_weights_and_no_validation_rows():
    x, y = _blobs(300)
    multi_hot = np.eye(3, dtype=np.float32)[y]
    multi_hot[::5, (y[::5] + 1) % 3] = 1           # some windows carry two labels
    keys = np.array([f"r{i // 10}" for i in range(len(y))])
    w = np.where(y == 0, 2.0, 1.0)
    result = search_head(x, y, num_classes=3, head="auto", multi_hot_train=multi_hot,
                         sample_weight=w, train_keys=keys, seed=0, config=FAST)
    assert result.model.layers[-1].activation.__name__ == "sigmoid"
    assert result.report["validation_from"].startswith("20%")
    assert result.report["train_rows"] + result.report["validation_rows"] == len(y)
    p = result.model.predict(x, verbose=0)
    assert (p.argmax(1) == y).mean() > 0.95       # the second labels are random: unlearnable
    assert ((p >= 0.5) == (multi_hot > 0.5)).mean() > 0.8


def test_linear_matches_sklearn_logistic_regression():
    """The linear head is a LogisticRegression: same optimum for l2 = 1 / (2 C n)."""
    from sklearn.linear_model import LogisticRegression
    x, y = _blobs(200, d=8, shift=0.0)
    x = x / 7
    C = 0.05
    lr = LogisticRegression(C=C, max_iter=5000, tol=1e-8).fit(x, y)
    W, b, _ = head_search.fit_linear_weights(x, np.eye(3)[y], 1 / (2 * C * len(y)),
                                             max_iter=5000)
    p_ours = head_search._activate(x.astype(np.float64) @ W + b, False)
    assert np.abs(p_ours - lr.predict_proba(x)).max() < 1e-3


def test_small_validation_is_ranked_by_cross_validation_over_whole_recordings():
    x, y = _blobs(240)
    xv, yv = _blobs(30, seed=1)
    keys = np.array([f"train{i // 4}" for i in range(len(y))])     # 4 windows per recording
    y = y[(np.arange(len(y)) // 4) * 4]
    vkeys = np.array([f"val{i // 3}" for i in range(len(yv))])
    yv = yv[(np.arange(len(yv)) // 3) * 3]
    result = search_head(x, y, xv, yv, num_classes=3, head="linear", train_keys=keys,
                         val_keys=vkeys, seed=0, config=FAST)
    assert "5-fold cross-validation over the 70 training and validation recordings" in \
        result.report["scored_on"]
    assert result.report["candidates"][0]["validation"]["n"] == 70        # every clip scored
    assert result.report["final_fit"]["validation"]["n"] == 10            # then fit on train
    folds = head_search._folds(np.concatenate([keys, vkeys]), 5, seed=0)
    for key in np.unique(keys):                   # a recording never straddles two folds
        assert len(set(folds[np.concatenate([keys, vkeys]) == key])) == 1
    # with enough validation recordings, the validation split itself ranks them
    big = search_head(x, y, xv, yv, num_classes=3, head="linear", train_keys=keys,
                      val_keys=vkeys, seed=0,
                      config=dataclasses.replace(FAST, cv_max_validation_units=5))
    assert big.report["scored_on"] == "validation"


def _row(family, loss, se, l2, **kw):
    return {"family": family, "l2": l2, **kw, "validation": {"loss": loss, "loss_se": se}}


def test_one_standard_error_rule_prefers_linear_and_the_strongest_l2_it_cannot_tell_apart():
    rows = [_row("linear", 0.30, 0.02, 1e-2), _row("linear", 0.27, 0.02, 1e-3),
            _row("linear", 0.26, 0.02, 1e-4), _row("mlp", 0.25, 0.02, 1e-4, dropout=0.5)]
    # best 0.25 + 0.02: linear 1e-3 (0.27) is the strongest L2 within the bar
    assert head_search.choose(rows) is rows[1]
    # an MLP clearly better than every linear head is kept
    rows[3]["validation"]["loss"] = 0.20
    assert head_search.choose(rows) is rows[3]
    # zero standard errors: plain lowest loss
    rows[3]["validation"]["loss"] = 0.25
    assert head_search.choose(rows, standard_errors=0.0, tie_absolute=0.0) is rows[3]


def test_cross_validated_mlp_stops_early_on_other_recordings_never_on_the_scored_fold(
        monkeypatch):
    """Stopping on the fold it is scored on would pick each fit's best epoch on those very
    rows and flatter the MLP against the linear head, which has no such choice."""
    x, y = _blobs(240)
    keys = np.array([f"rec{i // 4}" for i in range(len(y))])      # 4 windows per recording
    y = y[(np.arange(len(y)) // 4) * 4]
    x[:, 0] = np.arange(len(x))                                     # a row id to read back
    calls = []
    fit_mlp = head_search.fit_mlp

    def spy(model, x_fit, y_fit, x_stop, y_stop, **kw):
        calls.append((x_fit[:, 0].astype(int), x_stop[:, 0].astype(int)))
        return fit_mlp(model, x_fit, y_fit, x_stop, y_stop, **kw)

    monkeypatch.setattr(head_search, "fit_mlp", spy)
    config = dataclasses.replace(FAST, mlp_grid=FAST.mlp_grid[:1], mlp_max_epochs=3)
    search_head(x[:200], y[:200], x[200:], y[200:], num_classes=3, head="mlp",
                train_keys=keys[:200], val_keys=keys[200:], seed=0, config=config)
    folds = head_search._folds(keys, 5, seed=0)
    assert len(calls) == 5 + 1                          # one fit per fold, then the final fit
    for f, (fitted, stopped) in enumerate(calls[:5]):
        scored = np.flatnonzero(folds == f)
        assert len(stopped) and not set(stopped) & set(fitted)
        assert sorted(np.concatenate([fitted, stopped, scored])) == list(range(240))
        assert not set(keys[stopped]) & set(keys[fitted])           # whole recordings
    assert list(calls[5][1]) == list(range(200, 240))   # the final fit stops on validation
