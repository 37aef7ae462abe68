"""`--head linear|mlp|auto`: a head on cached (frozen) embeddings that is never worse than
a linear probe, with its regularization and learning rate chosen on validation.

`earmark train --head auto|linear|mlp` uses it on every frozen-cache path (the default head
is still `dropout`: see `model.train_config.HEADS`); the measured
comparison with scikit-learn's LogisticRegression is in docs/train.md
(`benchmarks/head_vs_probe.py`).

Pure functions over numpy arrays: embeddings [n, d] float32, integer labels [n], optional
multi-hot targets [n, k] (multi-label), optional sample weights [n] and optional recording
keys [n] (clip scores). No Beam, no argparse.

    result = search_head(x_train, y_train, x_val, y_val, num_classes=k, head="auto",
                         train_keys=..., val_keys=..., sample_weight=..., seed=0)
    result.model    # keras.Model [b, d] → [b, k] probabilities: serving_model(embedder,
                    # result.model, config) / embedding_serving_model(base, result.model, config)
    result.report   # JSON-able dict for model.json: candidates, validation scores, chosen, seconds

Every candidate standardizes its input with the training split's moments
(`head.feature_moments`) inside the Keras model (a `Normalization` layer, as `build_head`):

- `linear`: standardize → dense (softmax, or sigmoid when multi-label). The weighted
  cross-entropy + L2 is convex: it is minimized to convergence by L-BFGS (scipy) for every L2
  on `LINEAR_L2_GRID` (warm-started from the strongest; the grid stops once the validation
  loss has risen `LINEAR_STOP_RISE` above its best), and the L2 is chosen on validation.
  This is a scikit-learn LogisticRegression with the same loss (`l2 = 1 / (2 C n)`), inside
  a Keras layer.
- `mlp`: standardize → dense `hidden` (relu) → dropout → dense. Mini-batch Adam with early
  stopping on the validation loss (best weights restored); dropout, L2 (weight decay) and
  learning rate chosen on validation from `MLP_GRID`.
- `auto`: both families; the MLP replaces the linear head only when it validates clearly
  better (see `choose`).

Validation scores are clip-level when the rows carry recording keys and each key holds one
label (a clip's score is the mean of its windows' probabilities, as `earmark evaluate`
reports, `evaluate.aggregate`); otherwise window-level (annotated long recordings, whose
windows carry different labels, or no keys).

Selection criterion: the clip-level log loss, a proper score that rewards the calibration
`choose_thresholds` relies on (accuracy moves in steps and ties most candidates). Validation
sets are often small (ESC-10 folds 1-2 hold out ~16 clips, where every candidate scored
1.000 and the choice was noise), so with fewer than `CV_MAX_VALIDATION_UNITS` validation
recordings every candidate is scored by `CV_FOLDS`-fold cross-validation over the training
and validation recordings together (whole recordings per fold, out-of-fold probabilities
pooled); with more, on the validation split. `choose` then applies the one-standard-error
rule: the simplest candidate (linear before MLP, strongest L2 first) whose loss is within one
standard error of the lowest. The chosen candidate is
then fitted on the training split alone: the validation split stays held out for the
thresholds and event calibration that follow.

No validation rows: `VALIDATION_HOLDOUT` of the training recordings (by key, seeded) are
held out for the choice and the early stopping, and the chosen head is trained on the rest.
"""
import dataclasses
import time
from typing import Optional, Sequence

import keras
import numpy as np

from earmark.model.head import feature_moments

HEADS = ("linear", "mlp", "auto")
LINEAR_L2_GRID = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5)   # strongest first
# (dropout, l2, learning rate)
MLP_GRID = ((0.5, 1e-3, 1e-3), (0.5, 1e-4, 3e-3), (0.25, 1e-4, 1e-3))
MLP_HIDDEN = 256
STANDARD_ERRORS = 1.0       # the one-standard-error rule (see `choose`)
TIE_ABSOLUTE = 0.002        # nats: below this, losses tie (both near-perfect)
CV_FOLDS = 5
CV_MAX_VALIDATION_UNITS = 100   # fewer validation recordings: rank by cross-validation
VALIDATION_HOLDOUT = 0.2
LINEAR_STOP_RISE = 0.1    # stop the L2 grid when the validation loss is 10 % above its best


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Search settings; the defaults are what `earmark train --head` should use."""
    head: str = "auto"                        # one of HEADS
    seed: int = 0
    linear_l2_grid: Sequence[float] = LINEAR_L2_GRID
    linear_max_iter: int = 100                # L-BFGS iterations per L2 (warm-started)
    linear_gtol: float = 1e-5                 # L-BFGS gradient tolerance (mean-scaled loss)
    mlp_grid: Sequence[tuple] = MLP_GRID      # (dropout, l2, learning rate)
    mlp_hidden: int = MLP_HIDDEN
    mlp_batch_size: int = 128
    mlp_max_epochs: int = 100
    mlp_patience: int = 8                     # epochs without a lower validation loss
    standard_errors: float = STANDARD_ERRORS
    tie_absolute: float = TIE_ABSOLUTE
    cv_folds: int = CV_FOLDS                  # 0 or 1: always rank on the validation split
    cv_max_validation_units: int = CV_MAX_VALIDATION_UNITS


@dataclasses.dataclass
class SearchResult:
    model: keras.Model        # [b, d] → [b, k] probabilities
    report: dict              # JSON-able, for model.json's "head"


# --- scores ---------------------------------------------------------------------------------

def _targets(labels, multi_hot, k):
    if multi_hot is not None:
        return np.asarray(multi_hot, np.float32)
    return np.eye(k, dtype=np.float32)[np.asarray(labels, np.int64)]


def clip_groups(keys, labels, multi_hot=None):
    """Row → clip index when `keys` group rows into clips whose windows share one label (or
    one multi-hot row), else None (window-level scoring)."""
    if keys is None or len(keys) == 0:
        return None
    _, inverse = np.unique(np.asarray(keys), return_inverse=True)
    t = (np.asarray(labels)[:, None] if multi_hot is None else np.asarray(multi_hot)).astype(np.float64)
    m = int(inverse.max()) + 1
    lo = np.full((m, t.shape[1]), np.inf)
    hi = np.full((m, t.shape[1]), -np.inf)
    np.minimum.at(lo, inverse, t)
    np.maximum.at(hi, inverse, t)
    return inverse if np.array_equal(lo, hi) else None


def scores(probs, labels, multi_hot=None, groups=None, sample_weight=None) -> dict:
    """Log loss, accuracy and macro-F1 of `probs` [n, k]; clip-level (mean of each group's
    probabilities) when `groups` (from `clip_groups`) is given. Multi-label: binary
    cross-entropy, per-label accuracy and macro-F1 at 0.5. `sample_weight` weighs the window
    loss (class weights), not clip scores."""
    probs = np.asarray(probs, np.float64)
    k = probs.shape[1]
    y = _targets(labels, multi_hot, k).astype(np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, np.float64)
    if groups is not None:
        m = int(groups.max()) + 1
        counts = np.bincount(groups, minlength=m)[:, None]
        p = np.zeros((m, k))
        np.add.at(p, groups, probs)
        probs = p / counts
        yy = np.zeros((m, k))
        yy[groups] = y
        y, w = yy, None
    eps = 1e-7
    p = np.clip(probs, eps, 1 - eps)
    multi = multi_hot is not None
    per_row = (-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1) if multi
               else -(y * np.log(p)).sum(axis=1))
    loss = float(np.average(per_row, weights=w))
    loss_se = float(np.sqrt(np.average((per_row - loss) ** 2, weights=w) / max(len(per_row) - 1, 1)))
    pred = (probs >= 0.5) if multi else np.eye(k, dtype=bool)[probs.argmax(axis=1)]
    truth = y > 0.5
    acc = float((pred == truth).mean()) if multi else float(pred[truth].mean())
    tp = (pred & truth).sum(axis=0)
    support = truth.sum(axis=0)
    f1 = 2 * tp / np.maximum(pred.sum(axis=0) + support, 1)
    present = support > 0
    return {"loss": round(loss, 5), "loss_se": round(loss_se, 5), "accuracy": round(acc, 4),
            "macro_f1": round(float(f1[present].mean()) if present.any() else 0.0, 4),
            "unit": "clip" if groups is not None else "window", "n": int(len(y))}


# --- the linear head ------------------------------------------------------------------------

def _standardize(x, mean, var):
    """As keras.layers.Normalization computes it."""
    return (np.asarray(x, np.float32) - mean) / np.maximum(np.sqrt(var), keras.backend.epsilon())


def _activate(z, multi):
    if multi:
        return 1 / (1 + np.exp(-z))
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_linear_weights(xs, y, l2, multi=False, sample_weight=None, init=None, max_iter=100,
                       gtol=1e-5):
    """Minimize mean_w(cross-entropy) + l2 · ||W||² (Keras' L2 convention; the bias is not
    penalized) over standardized features `xs` [n, d] and targets `y` [n, k] by L-BFGS.
    → (W [d, k], b [k], iterations)."""
    from scipy.optimize import minimize
    xs = np.asarray(xs, np.float32)   # float32 products: half the time of float64, and
    n, d = xs.shape                   # the Keras head computes in float32 anyway
    k = y.shape[1]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    w = w / w.sum()

    def f(theta):
        W, b = theta[:d * k].reshape(d, k), theta[d * k:]
        z = (xs @ W.astype(np.float32)).astype(np.float64) + b
        if multi:
            # mean over labels of binary cross-entropy, stable form
            ce = (np.logaddexp(0, z) - y * z).mean(axis=1)
            g = (1 / (1 + np.exp(-z)) - y) / k
        else:
            zmax = z.max(axis=1, keepdims=True)
            lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
            ce = lse - (y * z).sum(axis=1)
            g = np.exp(z - lse[:, None]) - y
        g = g * w[:, None]
        loss = float(w @ ce) + l2 * float((W * W).sum())
        gW = (xs.T @ g.astype(np.float32)).astype(np.float64) + 2 * l2 * W
        return loss, np.concatenate([gW.ravel(), g.sum(axis=0)])

    theta0 = np.zeros(d * k + k) if init is None else init
    res = minimize(f, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": gtol})
    return res.x[:d * k].reshape(d, k), res.x[d * k:], int(res.nit)


def build_linear_head(mean, var, num_classes, multi_label=False, l2=0.0, weights=None):
    """Keras head: standardize (with `mean`, `var`) → dense; `weights` = (W, b) to set."""
    d = len(mean)
    inputs = keras.Input((d,), name="pooled_features")
    x = keras.layers.Normalization(axis=-1, mean=mean, variance=var, name="standardize")(inputs)
    outputs = keras.layers.Dense(num_classes, activation="sigmoid" if multi_label else "softmax",
                                 kernel_regularizer=keras.regularizers.L2(l2) if l2 else None,
                                 name="scores")(x)
    model = keras.Model(inputs, outputs, name="head")
    if weights is not None:
        model.get_layer("scores").set_weights([np.asarray(weights[0], np.float32),
                                               np.asarray(weights[1], np.float32)])
    return model


# --- the MLP head ---------------------------------------------------------------------------

def build_mlp_head(mean, var, num_classes, multi_label=False, hidden=MLP_HIDDEN, dropout=0.5,
                   l2=1e-4):
    """Keras head: standardize → dense(hidden, relu) → dropout → dense."""
    d = len(mean)
    reg = keras.regularizers.L2(l2) if l2 else None
    inputs = keras.Input((d,), name="pooled_features")
    x = keras.layers.Normalization(axis=-1, mean=mean, variance=var, name="standardize")(inputs)
    x = keras.layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="hidden")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="sigmoid" if multi_label else "softmax",
                                 kernel_regularizer=reg, name="scores")(x)
    return keras.Model(inputs, outputs, name="head")


def fit_mlp(model, x, y, x_val, y_val, *, lr, multi=False, sample_weight=None, batch_size=128,
            max_epochs=100, patience=8, seed=0, val_weight=None, trainer=None):
    """Mini-batch Adam on weighted cross-entropy + the model's L2; early stopping on the
    validation loss (training loss without validation rows), best weights restored.
    `trainer`: an `MlpTrainer` of this architecture and `lr` to train in (its traced step
    reused); None: one made for this fit. → {"epochs": run, "best_epoch": ...,
    "best_val_loss": ...}."""
    trainer = trainer or MlpTrainer(model, lr, multi)
    return trainer.fit(model, x, y, x_val, y_val, sample_weight=sample_weight,
                       batch_size=batch_size, max_epochs=max_epochs, patience=patience,
                       seed=seed, val_weight=val_weight)


class MlpTrainer:
    """One MLP head architecture's training (Adam at `lr`), traced once: every fit of that
    architecture (cross-validation folds, the final fit) runs in this trainer's own copy of
    the model's layers after its standardization (each fit standardizes its rows by its
    model's own layer first), from the weights and dropout seed of the model it is given,
    the optimizer fresh, and hands the trained weights back. Tracing a new step per fit cost
    more than the fit itself on small data."""

    def __init__(self, model, lr: float, multi: bool = False):
        import tensorflow as tf
        layers = _trained_layers(model)
        x = inputs = keras.Input(layers[0].input.shape[1:])
        for layer in layers:
            x = layer.__class__.from_config(layer.get_config())(x)
        self.model = keras.Model(inputs, x)
        self.opt = keras.optimizers.Adam(lr)
        self.opt.build(self.model.trainable_variables)
        self.loss_fn = (keras.losses.BinaryCrossentropy(reduction=None) if multi
                        else keras.losses.CategoricalCrossentropy(reduction=None))
        self.regularized = [(l.kernel, l.kernel_regularizer) for l in self.model.layers
                            if getattr(l, "kernel_regularizer", None) is not None]
        d, k = inputs.shape[-1], model.output_shape[-1]
        features, targets, weights = (tf.TensorSpec([None, d]), tf.TensorSpec([None, k]),
                                      tf.TensorSpec([None]))
        # (train rows, targets, weights, the same for validation, permutation, batch size)
        self.epoch = tf.function(self._epoch, input_signature=[
            features, targets, weights, features, targets, weights,
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])

    def _epoch(self, x, y, w, xv, yv, wv, perm, batch_size):
        import tensorflow as tf
        model, loss_fn, opt = self.model, self.loss_fn, self.opt
        n_batches = (tf.shape(x)[0] + batch_size - 1) // batch_size
        for i in tf.range(n_batches):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb, yb, wb = tf.gather(x, idx), tf.gather(y, idx), tf.gather(w, idx)
            with tf.GradientTape() as tape:
                ce = tf.reduce_sum(loss_fn(yb, model(xb, training=True)) * wb) / tf.reduce_sum(wb)
                loss = ce + tf.add_n([r(k) for k, r in self.regularized]) if self.regularized \
                    else ce
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        ce_v = loss_fn(yv, model(xv, training=False))
        return tf.reduce_sum(ce_v * wv) / tf.reduce_sum(wv)

    def _start_from(self, model) -> None:
        """This trainer's layers as `model`'s are (weights, dropout seeds), Adam fresh."""
        for ours, theirs in zip(_trained_layers(self.model), _trained_layers(model)):
            ours.set_weights(theirs.get_weights())
            if getattr(theirs, "seed_generator", None) is not None:
                ours.seed_generator.state.assign(theirs.seed_generator.state)
        for v in self.opt.variables:
            if not v.path.endswith("learning_rate"):
                v.assign(np.zeros(v.shape, v.dtype))

    def fit(self, model, x, y, x_val, y_val, *, sample_weight=None, batch_size=128,
            max_epochs=100, patience=8, seed=0, val_weight=None) -> dict:
        """`fit_mlp` of `model`, run here; `model` ends with the best weights."""
        import tensorflow as tf
        self._start_from(model)
        n = len(x)
        w = np.ones(n, np.float32) if sample_weight is None else sample_weight
        has_val = x_val is not None and len(x_val) > 0
        xv, yv = (x_val, y_val) if has_val else (x, y)
        wv = (np.ones(len(xv), np.float32) if val_weight is None else val_weight) if has_val \
            else w
        standardize = _standardizer(model)
        args = [tf.constant(np.asarray(a, np.float32)) for a in (x, y, w, xv, yv, wv)]
        args[0], args[3] = standardize(args[0]), standardize(args[3])
        batch = tf.constant(min(batch_size, n), tf.int32)
        rng = np.random.default_rng(seed)
        best, best_epoch, best_weights, run = np.inf, 0, self.model.get_weights(), 0
        for e in range(max_epochs):
            run = e + 1
            v = float(self.epoch(*args, tf.constant(rng.permutation(n), tf.int32), batch))
            if v < best - 1e-6:
                best, best_epoch, best_weights = v, run, self.model.get_weights()
            elif run - best_epoch >= patience:
                break
        self.model.set_weights(best_weights)
        for ours, theirs in zip(_trained_layers(self.model), _trained_layers(model)):
            theirs.set_weights(ours.get_weights())
        return {"epochs": run, "best_epoch": best_epoch, "best_val_loss": round(best, 5)}


def _trained_layers(model) -> list:
    """The layers of a head after its input and its standardization (a fixed Normalization:
    applied to the rows before training, `_standardizer`)."""
    return [l for l in model.layers if not isinstance(l, (keras.layers.InputLayer,
                                                          keras.layers.Normalization))]


def _standardizer(model):
    """rows → the head's standardization of them (its Normalization layer, run as the layer
    runs; the rows themselves when it has none)."""
    norms = [l for l in model.layers if isinstance(l, keras.layers.Normalization)]
    return norms[0] if norms else (lambda rows: rows)


# --- the search -----------------------------------------------------------------------------

def _holdout(labels, keys, fraction, seed):
    """Hold out `fraction` of the recordings (by key; rows when no keys), seeded. → mask."""
    units = np.asarray(keys) if keys is not None else np.arange(len(labels))
    uniq = np.unique(units)
    rng = np.random.default_rng(seed)
    held = rng.permutation(uniq)[:max(1, int(round(fraction * len(uniq))))]
    return np.isin(units, held)


def choose(candidates: list, standard_errors: float = STANDARD_ERRORS,
           tie_absolute: float = TIE_ABSOLUTE) -> dict:
    """The candidate `auto` keeps, by the one-standard-error rule (Breiman et al. 1984;
    Hastie et al., ESL 7.10): the simplest candidate whose validation loss is within
    `standard_errors` standard errors (`loss_se`, at least `tie_absolute`) of the lowest.
    Simplest: a linear head before any MLP, and among linear heads the strongest L2. So the
    MLP is kept only when it beats every linear head by more than that margin, and the L2 is
    the strongest the validation data cannot tell from the best. Validation data that shares
    sources with the training data (clips cut from the same recording: ESC-10's A/B/C clips)
    flatters weak regularization; the rule guards against that."""
    best = min(candidates, key=lambda c: c["validation"]["loss"])
    bar = best["validation"]["loss"] + max(standard_errors * best["validation"]["loss_se"],
                                           tie_absolute)
    within = [c for c in candidates if c["validation"]["loss"] <= bar]
    linear = [c for c in within if c["family"] == "linear"]
    if linear:
        return max(linear, key=lambda c: c["l2"])
    return min(within, key=lambda c: (-c.get("dropout", 0), -c["l2"], c["validation"]["loss"]))


def _fit_candidate(candidate, x, y, x_stop, y_stop, *, k, multi, sw, theta, config, seed,
                   trainers=None):
    """Fit one candidate on (x, y) → (predict(x) → probs, payload for the final model, theta).
    `x_stop`/`y_stop`: the MLP's early-stopping rows; `theta`: linear warm start;
    `trainers`: {architecture: MlpTrainer}, filled and reused across fits."""
    mean, var = feature_moments(x)
    if candidate["family"] == "linear":
        W, b, nit = fit_linear_weights(_standardize(x, mean, var), y, candidate["l2"], multi,
                                       sw, theta, config.linear_max_iter, config.linear_gtol)
        predict = lambda z: _activate(  # noqa: E731
            _standardize(z, mean, var).astype(np.float64) @ W + b, multi)
        return predict, ("linear", (mean, var, W, b), {"iterations": nit}), \
            np.concatenate([W.ravel(), b])
    keras.utils.set_random_seed(seed)
    model = build_mlp_head(mean, var, k, multi, config.mlp_hidden, candidate["dropout"],
                           candidate["l2"])
    trainers = {} if trainers is None else trainers
    architecture = (x.shape[1], k, multi, config.mlp_hidden, candidate["dropout"],
                    candidate["l2"], candidate["learning_rate"])
    if architecture not in trainers:
        trainers[architecture] = MlpTrainer(model, candidate["learning_rate"], multi)
    fit = fit_mlp(model, x, y, x_stop, y_stop, lr=candidate["learning_rate"], multi=multi,
                  sample_weight=sw, batch_size=config.mlp_batch_size,
                  max_epochs=config.mlp_max_epochs, patience=config.mlp_patience, seed=seed,
                  trainer=trainers[architecture])
    return (lambda z: _predict(model, z)), ("mlp", model, fit), theta


def _balanced(labels, k):
    """Balanced class weights n / (k · count) per row (as `head.class_weights`)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return (len(labels) / (k * np.maximum(counts, 1)))[labels].astype(np.float32)


def _predict(model, x, batch_size=4096) -> np.ndarray:
    """Probabilities of a head, called eagerly (a `predict` per candidate would trace a new
    graph each time)."""
    x = np.asarray(x, np.float32)
    parts = [np.asarray(model(x[i:i + batch_size], training=False))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def _folds(units, n_folds, seed):
    """Row → fold index, whole recordings (units) per fold, seeded."""
    uniq = np.unique(units)
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_unit = np.empty(len(uniq), np.int64)
    fold_of_unit[order] = np.arange(len(uniq)) % n_folds
    return fold_of_unit[np.searchsorted(uniq, units)]


def _cross_validated(candidate, x, y, folds, units, *, k, multi, sw, config, seed,
                     trainers=None):
    """Out-of-fold probabilities of `candidate` over every row (each fold predicted by the
    candidate fitted on the others). The MLP stops early on `VALIDATION_HOLDOUT` of the
    other folds' recordings, never on the fold it predicts: picking each fit's best epoch
    on the rows it is scored on would flatter the MLP against the linear head, which has
    no such choice (on ESC-10 that bias chose a worse MLP over the linear head)."""
    probs = np.zeros((len(x), k))
    for f in range(int(folds.max()) + 1):
        held = folds == f
        fit, stop = ~held, np.zeros(len(x), bool)
        if candidate["family"] == "mlp":
            stop[fit] = _holdout(None, units[fit], VALIDATION_HOLDOUT, seed)
            fit &= ~stop
        predict, _, _ = _fit_candidate(candidate, x[fit], y[fit], x[stop], y[stop], k=k,
                                       multi=multi, sw=None if sw is None else sw[fit],
                                       theta=None, config=config, seed=seed, trainers=trainers)
        probs[held] = predict(x[held])
    return probs


def search_head(x_train, labels_train, x_val=None, labels_val=None, *, num_classes: int,
                head: str = "auto", multi_hot_train=None, multi_hot_val=None,
                sample_weight=None, train_keys=None, val_keys=None, seed: int = 0,
                config: Optional[SearchConfig] = None, log=None) -> SearchResult:
    """Train the `head` (linear | mlp | auto) candidates on embeddings `x_train` [n, d] and
    keep the one that validates best (scored per clip when the keys group rows into clips).
    With fewer than `cv_max_validation_units` validation recordings, candidates are scored
    by `cv_folds`-fold cross-validation over the training and validation recordings
    together (whole recordings per fold), else on the validation split; the chosen one is
    then fitted on the training split (the MLP stopping early on validation).
    `multi_hot_*` [n, k]: multi-label (sigmoid) targets. `sample_weight` [n]: per-row
    training weights (balanced class weights); validation scores are unweighted.
    Deterministic given `seed` (the caller's global Keras seed is reset to it).
    → SearchResult(model, report)."""
    config = dataclasses.replace(config or SearchConfig(), head=head, seed=seed)
    if config.head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}")
    log = log or (lambda line: None)
    t_start = time.monotonic()
    k = num_classes
    multi = multi_hot_train is not None
    x_train = np.asarray(x_train, np.float32)
    labels_train = np.asarray(labels_train, np.int64)
    y_train = _targets(labels_train, multi_hot_train, k)
    sw = None if sample_weight is None else np.asarray(sample_weight, np.float32)
    keys_tr = None if train_keys is None else np.asarray(train_keys)
    validation_from = "validation"
    if x_val is None or len(x_val) == 0:
        held = _holdout(labels_train, keys_tr, VALIDATION_HOLDOUT, seed)
        x_val, labels_val = x_train[held], labels_train[held]
        y_val = y_train[held]
        multi_hot_val = None if not multi else y_val
        val_keys = None if keys_tr is None else keys_tr[held]
        keep = ~held
        x_train, labels_train, y_train = x_train[keep], labels_train[keep], y_train[keep]
        sw = None if sw is None else sw[keep]
        keys_tr = None if keys_tr is None else keys_tr[keep]
        validation_from = f"{VALIDATION_HOLDOUT:.0%} of the training recordings (seed {seed})"
    else:
        x_val = np.asarray(x_val, np.float32)
        labels_val = np.asarray(labels_val, np.int64)
        y_val = _targets(labels_val, multi_hot_val, k)

    # what candidates are scored on: out-of-fold predictions over train + validation when
    # the validation split is too small to rank them, else the validation split
    val_units = np.asarray(val_keys) if val_keys is not None else np.arange(len(x_val))
    train_units = keys_tr if keys_tr is not None else np.arange(len(x_train)) + len(x_val)
    n_units = len(np.unique(val_units)) + len(np.unique(train_units))
    cv = (config.cv_folds >= 2 and len(np.unique(val_units)) < config.cv_max_validation_units
          and n_units >= 2 * config.cv_folds and (val_keys is None) == (keys_tr is None))
    if cv:
        x_all = np.concatenate([x_train, x_val])
        y_all = np.concatenate([y_train, y_val])
        labels_all = np.concatenate([labels_train, labels_val])
        multi_all = None if not multi else y_all
        units = np.concatenate([train_units.astype(str), val_units.astype(str)])
        sw_all = (None if sw is None else _balanced(labels_all, k) if not multi
                  else np.concatenate([sw, np.ones(len(x_val), np.float32)]))
        folds = _folds(units, config.cv_folds, seed)
        groups = clip_groups(units if keys_tr is not None else None, labels_all, multi_all)
        scored_on = (f"{config.cv_folds}-fold cross-validation over the {n_units} training "
                     f"and validation recordings (fewer than {config.cv_max_validation_units} "
                     "validation recordings)")
    else:
        groups = clip_groups(val_keys, labels_val, multi_hot_val)
        scored_on = validation_from

    trainers = {}   # every fit of one MLP architecture trains in one traced step

    def score(candidate, theta):
        """→ (validation scores, theta for the next linear fit)."""
        if cv:
            probs = _cross_validated(candidate, x_all, y_all, folds, units, k=k,
                                     multi=multi, sw=sw_all, config=config, seed=seed,
                                     trainers=trainers)
            return scores(probs, labels_all, multi_all, groups), theta
        predict, payload, theta = _fit_candidate(candidate, x_train, y_train, x_val, y_val, k=k,
                                                 multi=multi, sw=sw, theta=theta,
                                                 config=config, seed=seed, trainers=trainers)
        candidate.update(payload[2])   # iterations, or epochs run and best epoch
        return scores(predict(x_val), labels_val, multi_hot_val, groups), theta

    candidates = []
    if config.head in ("linear", "auto"):
        theta = None
        for l2 in config.linear_l2_grid:
            t0 = time.monotonic()
            row = {"family": "linear", "l2": l2}
            row["validation"], theta = score(row, theta)
            row["seconds"] = round(time.monotonic() - t0, 3)
            candidates.append(row)
            log(f"head linear l2={l2:g}: {row['validation']}")
            # the validation loss over the L2 grid is U-shaped, and weaker L2 costs more
            # iterations: stop once it has risen clearly above its minimum
            losses = [c["validation"]["loss"] for c in candidates if c["family"] == "linear"]
            if losses[-1] > min(losses) * (1 + LINEAR_STOP_RISE) or \
                    (len(losses) >= 3 and losses[-1] > losses[-2] > losses[-3]):
                break
    if config.head in ("mlp", "auto"):
        for dropout, l2, lr in config.mlp_grid:
            t0 = time.monotonic()
            row = {"family": "mlp", "hidden": config.mlp_hidden, "dropout": dropout, "l2": l2,
                   "learning_rate": lr}
            row["validation"], _ = score(row, None)
            row["seconds"] = round(time.monotonic() - t0, 3)
            candidates.append(row)
            log(f"head mlp dropout={dropout} l2={l2:g} lr={lr:g}: {row['validation']}")
    chosen = choose(candidates, config.standard_errors, config.tie_absolute)
    _, (family, payload, fit), _ = _fit_candidate(
        chosen, x_train, y_train, x_val, y_val, k=k, multi=multi, sw=sw, theta=None,
        config=config, seed=seed, trainers=trainers)
    if family == "linear":
        mean, var, W, b = payload
        model = build_linear_head(mean, var, k, multi, chosen["l2"], (W, b))
    else:
        model = payload
    final_val = scores(_predict(model, x_val), labels_val,
                       multi_hot_val, clip_groups(val_keys, labels_val, multi_hot_val))
    report = {
        "requested": config.head, "head": chosen["family"], "chosen": dict(chosen),
        "selection": ("clip-level" if groups is not None else "window-level") +
                     f" log loss, {config.standard_errors:g}-standard-error rule: the simplest "
                     "candidate (linear before MLP, then the strongest L2) within that margin "
                     "of the lowest loss",
        "scored_on": scored_on, "validation_from": validation_from,
        "final_fit": {**fit, "validation": final_val},
        "candidates": candidates, "seed": seed,
        "train_rows": int(len(x_train)), "validation_rows": int(len(x_val)),
        "seconds": round(time.monotonic() - t_start, 2),
    }
    return SearchResult(model, report)
