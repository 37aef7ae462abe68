"""`--head linear|mlp|auto`: a head on cached (frozen) embeddings that is never worse than
a linear probe, with its regularization and learning rate chosen on validation.

Status (issue 13, in progress): `earmark train` does not use this module yet; its head is
still `head.build_head`. `benchmarks/head_vs_probe.py` measures both against scikit-learn's
LogisticRegression (README, Status): `auto` does not yet beat today's head reliably.

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

Selection criterion: the clip-level validation cross-entropy (log loss). Validation sets
here are small (ESC-10 folds 1-2 hold out ~16 clips: accuracy moves in 6-point steps and
ties most candidates); the log loss is continuous, a proper score, and rewards the
calibration that `choose_thresholds` relies on. Accuracy and macro-F1 are reported beside
it and guard the family choice: the MLP must lower the loss by more than `TIE_TOLERANCE`
(relative) and `TIE_ABSOLUTE` (nats) *and* not lose validation accuracy, else the simpler
linear head is kept (ties → linear).

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
TIE_TOLERANCE = 0.02        # relative: the MLP must lower the validation loss by 2 % ...
TIE_ABSOLUTE = 0.01         # ... and by 0.01 nats (both perfect on validation: a tie)
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
    tie_tolerance: float = TIE_TOLERANCE
    tie_absolute: float = TIE_ABSOLUTE


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
    pred = (probs >= 0.5) if multi else np.eye(k, dtype=bool)[probs.argmax(axis=1)]
    truth = y > 0.5
    acc = float((pred == truth).mean()) if multi else float(pred[truth].mean())
    tp = (pred & truth).sum(axis=0)
    support = truth.sum(axis=0)
    f1 = 2 * tp / np.maximum(pred.sum(axis=0) + support, 1)
    present = support > 0
    return {"loss": round(loss, 5), "accuracy": round(acc, 4),
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
            max_epochs=100, patience=8, seed=0, val_weight=None):
    """Mini-batch Adam on weighted cross-entropy + the model's L2; early stopping on the
    validation loss (training loss without validation rows), best weights restored.
    → {"epochs": run, "best_epoch": ..., "best_val_loss": ...}."""
    import tensorflow as tf
    n = len(x)
    w = np.ones(n, np.float32) if sample_weight is None else np.asarray(sample_weight, np.float32)
    x, y = tf.constant(x, tf.float32), tf.constant(y, tf.float32)
    w = tf.constant(w)
    has_val = x_val is not None and len(x_val) > 0
    xv = tf.constant(x_val, tf.float32) if has_val else x
    yv = tf.constant(y_val, tf.float32) if has_val else y
    wv = (tf.constant(np.asarray(val_weight, np.float32)) if val_weight is not None
          else tf.ones([len(xv)], tf.float32)) if has_val else w
    loss_fn = (keras.losses.BinaryCrossentropy(reduction=None) if multi
               else keras.losses.CategoricalCrossentropy(reduction=None))
    opt = keras.optimizers.Adam(lr)
    opt.build(model.trainable_variables)
    regularized = [(l.kernel, l.kernel_regularizer) for l in model.layers
                   if getattr(l, "kernel_regularizer", None) is not None]
    batch_size = min(batch_size, n)
    n_batches = int(np.ceil(n / batch_size))

    @tf.function
    def epoch(perm):
        for i in tf.range(n_batches):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb, yb, wb = tf.gather(x, idx), tf.gather(y, idx), tf.gather(w, idx)
            with tf.GradientTape() as tape:
                ce = tf.reduce_sum(loss_fn(yb, model(xb, training=True)) * wb) / tf.reduce_sum(wb)
                loss = ce + tf.add_n([r(k) for k, r in regularized]) if regularized else ce
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        ce_v = loss_fn(yv, model(xv, training=False))
        return tf.reduce_sum(ce_v * wv) / tf.reduce_sum(wv)

    rng = np.random.default_rng(seed)
    best, best_epoch, best_weights, run = np.inf, 0, model.get_weights(), 0
    for e in range(max_epochs):
        run = e + 1
        v = float(epoch(tf.constant(rng.permutation(n), tf.int32)))
        if v < best - 1e-6:
            best, best_epoch, best_weights = v, run, model.get_weights()
        elif run - best_epoch >= patience:
            break
    model.set_weights(best_weights)
    return {"epochs": run, "best_epoch": best_epoch, "best_val_loss": round(best, 5)}


# --- the search -----------------------------------------------------------------------------

def _holdout(labels, keys, fraction, seed):
    """Hold out `fraction` of the recordings (by key; rows when no keys), seeded. → mask."""
    units = np.asarray(keys) if keys is not None else np.arange(len(labels))
    uniq = np.unique(units)
    rng = np.random.default_rng(seed)
    held = rng.permutation(uniq)[:max(1, int(round(fraction * len(uniq))))]
    return np.isin(units, held)


def choose(candidates: list, tie_tolerance: float = TIE_TOLERANCE,
           tie_absolute: float = TIE_ABSOLUTE) -> dict:
    """The candidate `auto` keeps: the best linear one unless an MLP validates clearly better
    (validation loss lower by more than `tie_tolerance` relative and `tie_absolute` nats,
    and validation accuracy not lower). `candidates`: report rows with `family` and
    `validation` scores; within a family, the lowest validation loss."""
    def best_of(family):
        rows = [c for c in candidates if c["family"] == family]
        return min(rows, key=lambda c: c["validation"]["loss"]) if rows else None
    lin, mlp = best_of("linear"), best_of("mlp")
    if lin is None or mlp is None:
        return lin or mlp
    lv, mv = lin["validation"], mlp["validation"]
    margin = max(tie_tolerance * lv["loss"], tie_absolute)
    if mv["loss"] < lv["loss"] - margin and mv["accuracy"] >= lv["accuracy"]:
        return mlp
    return lin


def search_head(x_train, labels_train, x_val=None, labels_val=None, *, num_classes: int,
                head: str = "auto", multi_hot_train=None, multi_hot_val=None,
                sample_weight=None, train_keys=None, val_keys=None, seed: int = 0,
                config: Optional[SearchConfig] = None, log=None) -> SearchResult:
    """Train the `head` (linear | mlp | auto) candidates on embeddings `x_train` [n, d] and
    keep the one that validates best on `x_val` (scored per clip when `val_keys` group the
    rows into clips). `multi_hot_*` [n, k]: multi-label (sigmoid) targets. `sample_weight`
    [n]: per-row training weights (balanced class weights); validation scores are
    unweighted. Deterministic given `seed` (the caller's global Keras seed is reset to it).
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
        validation_from = f"{VALIDATION_HOLDOUT:.0%} of the training recordings (seed {seed})"
    else:
        x_val = np.asarray(x_val, np.float32)
        labels_val = np.asarray(labels_val, np.int64)
        y_val = _targets(labels_val, multi_hot_val, k)
    groups = clip_groups(val_keys, labels_val, multi_hot_val)
    mean, var = feature_moments(x_train)
    xs_tr, xs_val = _standardize(x_train, mean, var), _standardize(x_val, mean, var)

    candidates, models = [], []
    if config.head in ("linear", "auto"):
        theta = None
        for l2 in config.linear_l2_grid:
            t0 = time.monotonic()
            W, b, nit = fit_linear_weights(xs_tr, y_train, l2, multi, sw, theta,
                                           config.linear_max_iter, config.linear_gtol)
            theta = np.concatenate([W.ravel(), b])
            probs = _activate(xs_val.astype(np.float64) @ W + b, multi)
            row = {"family": "linear", "l2": l2, "iterations": nit,
                   "validation": scores(probs, labels_val, multi_hot_val, groups),
                   "seconds": round(time.monotonic() - t0, 3)}
            candidates.append(row)
            models.append(("linear", (W, b, l2)))
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
            keras.utils.set_random_seed(seed)
            model = build_mlp_head(mean, var, k, multi, config.mlp_hidden, dropout, l2)
            fit = fit_mlp(model, x_train, y_train, x_val, y_val, lr=lr, multi=multi,
                          sample_weight=sw, batch_size=config.mlp_batch_size,
                          max_epochs=config.mlp_max_epochs, patience=config.mlp_patience,
                          seed=seed)
            probs = model.predict(x_val, batch_size=1024, verbose=0)
            row = {"family": "mlp", "hidden": config.mlp_hidden, "dropout": dropout, "l2": l2,
                   "learning_rate": lr, **fit,
                   "validation": scores(probs, labels_val, multi_hot_val, groups),
                   "seconds": round(time.monotonic() - t0, 3)}
            candidates.append(row)
            models.append(("mlp", model))
            log(f"head mlp dropout={dropout} l2={l2:g} lr={lr:g}: {row['validation']}")
    chosen = choose(candidates, config.tie_tolerance, config.tie_absolute)
    i = next(j for j, c in enumerate(candidates) if c is chosen)
    family, payload = models[i]
    if family == "linear":
        W, b, l2 = payload
        model = build_linear_head(mean, var, k, multi, l2, (W, b))
    else:
        model = payload
    report = {
        "requested": config.head, "head": chosen["family"], "chosen": dict(chosen),
        "selection": "clip-level validation log loss (MLP only when lower by more than "
                     f"{config.tie_tolerance:.0%} and {config.tie_absolute:g} nats, and "
                     "validation accuracy not lower; ties → linear)" if groups is not None else
                     "window-level validation log loss (rows are not clips of one label)",
        "validation_from": validation_from,
        "candidates": candidates, "seed": seed,
        "train_rows": int(len(x_train)), "validation_rows": int(len(x_val)),
        "seconds": round(time.monotonic() - t_start, 2),
    }
    return SearchResult(model, report)
