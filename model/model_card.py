"""The model card: `model.json`, defined once. `ModelCard.from_dict` is the one reader (it
upgrades older formats, `upgrade`, and validates: a one-line UserError naming the model dir,
the key and the fix); `to_dict` the one writer. No Keras import.

Format 2 holds each fact once: `labels`; `feature_config` (the training recipe) and
`labeling_hop_seconds` (the window hop `earmark label` uses by default); `post_processing`:
every label's `segments.PostProcessing`, its threshold the model's threshold for that label;
`background_labels`; `activation`. The rest describe how the model was made and served
(`base`, `weights`, `serving`, ...): objects this module only checks are objects.
"""
import dataclasses

from earmark.model.errors import UserError
from earmark.model.features import FeatureConfig, default_labeling_hop_seconds
from earmark.model.model_files import META_FILE, RETRAIN
from earmark.model.segments import PostProcessing, is_number

FORMAT_VERSION = 2
ACTIVATIONS = ("softmax", "sigmoid")
# keys whose value is an object described elsewhere (train, export, bases, calibrate)
OBJECT_KEYS = ("base", "weights", "serving", "adapter", "strategy", "head", "training",
               "metrics", "calibration", "int8")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Everything model.json holds; units in the names."""
    labels: tuple                      # output order of the model's scores
    feature_config: FeatureConfig      # audio → patch recipe the model was trained on
    labeling_hop_seconds: float        # default window hop of `earmark label`
    post_processing: dict              # label → PostProcessing, every label
    background_labels: tuple = ()      # labels `earmark label` does not write by default
    activation: str = "softmax"        # of the output layer (sigmoid: --multi-label)
    model_id: str = None               # else derived from the serving file (model_files.model_id)
    licence: str = None                # of the base, for embedding bases
    base: dict = None
    weights: dict = None
    serving: dict = None
    adapter: dict = None
    strategy: dict = None
    head: dict = None
    training: dict = None
    metrics: dict = None
    calibration: dict = None           # how post_processing was chosen (None: not calibrated)
    int8: dict = None                  # model_int8.tflite: file, bytes, sha256, parity (train)

    @property
    def thresholds(self) -> dict:
        """label → threshold (from `post_processing`)."""
        return {l: self.post_processing[l].threshold for l in self.labels}

    @property
    def labeling_config(self) -> FeatureConfig:
        """The feature config as `earmark label` windows audio by default."""
        return self.feature_config.with_patch_hop(self.labeling_hop_seconds)

    def to_dict(self) -> dict:
        """The JSON object written as model.json (unset optional keys left out)."""
        out = {"format_version": FORMAT_VERSION, "labels": list(self.labels),
               "feature_config": self.feature_config.to_dict(),
               "labeling_hop_seconds": self.labeling_hop_seconds,
               "post_processing": {l: self.post_processing[l].to_dict() for l in self.labels},
               "background_labels": list(self.background_labels),
               "activation": self.activation}
        for key in ("model_id", "licence") + OBJECT_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, d, where: str) -> "ModelCard":
        """The card of model.json's content `d` (any format `upgrade` reads) of the model dir
        `where` (named in messages); one-line UserError for anything a reader would trip on."""
        bad = _complainer(where)
        if not isinstance(d, dict):
            bad("", f"is a JSON {_json_type(d)}, not an object")
        d = upgrade(d, where)
        labels = _labels(d, bad)
        config = _feature_config(d, bad)
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)} - {"format_version"})
        if unknown:
            bad(f"{unknown[0]!r}", f"is not a key of format {FORMAT_VERSION}")
        for key in OBJECT_KEYS:
            if d.get(key) is not None and not isinstance(d[key], dict):
                bad(f"'{key}'", "must be an object")
        num_classes = (d.get("head") or {}).get("num_classes")
        if num_classes is not None and num_classes != len(labels):
            bad("'labels'", f"lists {len(labels)} labels but the model has {num_classes} outputs "
                            "(head.num_classes)")
        background = d.get("background_labels", [])
        if not isinstance(background, list) or not all(isinstance(l, str) for l in background):
            bad("'background_labels'", "must be a list of label names")
        if set(background) - set(labels):
            bad("'background_labels'", f"names {sorted(set(background) - set(labels))[0]!r}, "
                                       "which is not one of its labels")
        hop = d.get("labeling_hop_seconds")
        if not is_number(hop) or hop <= 0:
            bad("'labeling_hop_seconds'", f"is {hop!r}; it must be a number > 0")
        if d.get("activation", "softmax") not in ACTIVATIONS:
            bad("'activation'", f"is {d['activation']!r}; it must be one of {', '.join(ACTIVATIONS)}")
        for key in ("model_id", "licence"):
            if d.get(key) is not None and not isinstance(d[key], str):
                bad(f"'{key}'", "must be a string")
        return cls(tuple(labels), config, float(hop), _post_processing(d, labels, bad),
                   tuple(background), d.get("activation", "softmax"),
                   **{k: d.get(k) for k in ("model_id", "licence") + OBJECT_KEYS})


def upgrade(d: dict, where: str) -> dict:
    """model.json content of any format → format 2 content (not yet validated), or a one-line
    UserError for a format this earmark does not read. Format 1 (no `format_version` also
    means 1) kept `thresholds` beside `post_processing` (entries possibly without
    `extend_s`), the labels again in `output` and the sample rate and labeling hop in
    `input`."""
    bad = _complainer(where)
    version = d.get("format_version", 1)
    if version == FORMAT_VERSION:
        return d
    if version != 1:
        raise UserError(f"--model {where}: {META_FILE} is format {version!r}, which this "
                        f"earmark does not read (formats 1 and {FORMAT_VERSION}); upgrade "
                        f"earmark or {RETRAIN}")
    old = {k: {} if d.get(k) is None else d[k] for k in ("thresholds", "input", "output")}
    for key, value in old.items():
        if not isinstance(value, dict):
            bad(f"'{key}'", "must be an object")
    d = {k: v for k, v in d.items()
         if k not in ("format_version", "feature_config_hash", "thresholds", "input", "output")}
    labels = [l for l in d.get("labels") or [] if isinstance(l, str)] \
        if isinstance(d.get("labels"), list) else []
    thresholds = old["thresholds"]
    for label, value in thresholds.items():
        if label not in labels:
            bad("'thresholds'", f"names {label!r}, which is not one of its labels")
        if not is_number(value) or not 0 <= value <= 1:
            bad(f"'thresholds.{label}'", f"is {value!r}; it must be a number in [0, 1]")
    hop = old["input"].get("default_hop_seconds")
    if hop is not None and (not is_number(hop) or hop <= 0):
        bad("'input.default_hop_seconds'", f"is {hop!r}; it must be a number > 0")
    if hop is None and "labeling_hop_seconds" not in d:
        try:
            hop = default_labeling_hop_seconds(FeatureConfig.from_dict(d["feature_config"]))
        except (KeyError, TypeError, ValueError):
            pass  # reported by from_dict as a bad feature_config
    if hop is not None:
        d["labeling_hop_seconds"] = hop
    if "activation" in old["output"]:
        d["activation"] = old["output"]["activation"]
    post = d.get("post_processing")
    if post is None or isinstance(post, dict):
        post = dict(post or {})
        for label in labels:  # uncalibrated labels: their threshold, default settings
            if label not in post:
                post[label] = PostProcessing(threshold=thresholds.get(label, 0.5)).to_dict()
            elif isinstance(post[label], dict):
                post[label] = {"extend_s": 0.0, **post[label]}  # from before extend_s
        d["post_processing"] = post
    if d.get("background_labels") is None:
        d.pop("background_labels", None)
    return d


def _complainer(where: str):
    def bad(key, what):
        raise UserError(f"--model {where}: {META_FILE}{' ' + key if key else ''} {what}; "
                        f"{RETRAIN}")
    return bad


def _labels(d: dict, bad) -> list:
    if "labels" not in d:
        bad("", "has no 'labels'")
    labels = d["labels"]
    if (not isinstance(labels, list) or not labels
            or not all(isinstance(l, str) and l for l in labels)):
        bad("'labels'", "must be a non-empty list of label names")
    if len(set(labels)) != len(labels):
        bad("'labels'", f"names {sorted({l for l in labels if labels.count(l) > 1})[0]!r} twice")
    return labels


def _feature_config(d: dict, bad) -> FeatureConfig:
    if "feature_config" not in d:
        bad("", "has no 'feature_config'")
    if not isinstance(d["feature_config"], dict):
        bad("'feature_config'", "must be an object")
    try:
        return FeatureConfig.from_dict(d["feature_config"])
    except (TypeError, ValueError) as e:
        bad("'feature_config'", f"is not valid ({str(e)[:120]})")


def _post_processing(d: dict, labels: list, bad) -> dict:
    """label → PostProcessing, with the rules of `PostProcessing.problem` (a model.json
    from before `low_threshold` lacks it: the threshold, no hysteresis)."""
    post = d.get("post_processing")
    if not isinstance(post, dict):
        bad("'post_processing'", "must be an object")
    for label in post:
        if label not in labels:
            bad("'post_processing'", f"names {label!r}, which is not one of its labels")
    out = {}
    for label in labels:
        pp = post.get(label)
        if not isinstance(pp, dict) or set(PostProcessing.REQUIRED) - set(pp):
            bad(f"'post_processing.{label}'",
                f"must be an object with {', '.join(PostProcessing.REQUIRED)}")
        wrong = PostProcessing.problem(pp)
        if wrong:
            bad(f"'post_processing.{label}.{wrong[0]}'", wrong[1])
        out[label] = PostProcessing.from_dict(pp)
    return out


def _json_type(v) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(v), type(v).__name__)
