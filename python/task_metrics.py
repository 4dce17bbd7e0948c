"""Task metrics for loractl's evaluation: resolved.json's `eval` section checked, its metrics
built, and one reply scored against its reference.

    cfg = validate_eval(raw.get("eval"))          # defaults filled in; ConfigError names the key
    metrics = build_metrics(cfg["metrics"])       # regexes compiled, schemas and scorers loaded
    scores, errors = score(metrics, output, reference, messages)

Kinds (docs/trainer-contract.md): exact, contains, regex, json_valid, json_schema, chrf,
rouge_l, python, judge. Every score is higher-is-better: exact, contains, regex, json_valid,
json_schema and python in [0, 1]; chrf on sacrebleu's 0..100 scale; rouge_l the rouge-score
F-measure in [0, 1]. `judge` metrics are validated for shape only and never scored here:
the controller runs the judge outside the training environment (which may have no network).

chrF and ROUGE-L come from sacrebleu and rouge-score, JSON Schema from jsonschema: the
well-known implementations whose numbers people compare with, not re-implementations.
Nothing here imports torch.
"""

import importlib.util
import inspect
import json
import math
import numbers
import os
import re

from train_lora_support import ConfigError

KINDS = ("exact", "contains", "regex", "json_valid", "json_schema", "chrf", "rouge_l", "python", "judge")

EVAL_DEFAULTS = {
    "generate": True,
    "max_examples": 200,
    "max_new_tokens": 256,
    "metrics": [],
    "primary": "",
    "min_improvement": 0.0,
    "at_checkpoints": False,
}

# An error message kept in generations.jsonl is cut to this many characters.
MAX_ERROR_CHARS = 500


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_eval(raw):
    """resolved.json's `eval` section (None when absent) with defaults filled in. Checks
    types and the shape of each metric; build_metrics checks what needs files or compiling.
    Raises ConfigError listing every problem by key (eval.metrics[1].pattern: ...)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"eval: must be an object, got {json.dumps(raw)}")
    cfg = dict(EVAL_DEFAULTS)
    cfg.update(raw)
    errors = []
    checks = {
        "generate": (lambda v: isinstance(v, bool), "a boolean"),
        "max_examples": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "max_new_tokens": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "metrics": (lambda v: isinstance(v, list), "a list"),
        "primary": (lambda v: isinstance(v, str), "a metric name"),
        "min_improvement": (_is_num, "a number"),
        "at_checkpoints": (lambda v: isinstance(v, bool), "a boolean"),
    }
    for key, (ok, want) in checks.items():
        if not ok(cfg[key]):
            errors.append(f"eval.{key}: must be {want}, got {json.dumps(cfg[key])}")
    names = []
    if isinstance(cfg["metrics"], list):
        for i, m in enumerate(cfg["metrics"]):
            errors.extend(_metric_shape(i, m, names))
    if not errors and cfg["primary"] and cfg["primary"] not in names:
        errors.append(f"eval.primary: {cfg['primary']!r} is not one of eval.metrics "
                      f"({', '.join(names) or 'none configured'})")
    if not errors and not cfg["primary"] and names:
        cfg["primary"] = names[0]
    if not errors and cfg["at_checkpoints"]:
        kind = {m["name"]: m["kind"] for m in cfg["metrics"]}.get(cfg["primary"])
        if kind is None:
            errors.append("eval.at_checkpoints: needs a metric in eval.metrics to score the checkpoints with")
        elif kind == "judge":
            errors.append(f"eval.at_checkpoints: the primary metric {cfg['primary']!r} is a judge, which runs "
                          "after training, outside the trainer: name another metric as eval.primary")
    if errors:
        raise ConfigError("; ".join(errors))
    return cfg


def _metric_shape(i, m, names):
    where = f"eval.metrics[{i}]"
    if not isinstance(m, dict):
        return [f"{where}: must be an object with name and kind, got {json.dumps(m)}"]
    errors = []
    name, kind = m.get("name"), m.get("kind")
    if not isinstance(name, str) or not name.strip():
        errors.append(f"{where}.name: must be a non-empty string, got {json.dumps(name)}")
    elif name in names:
        errors.append(f"{where}.name: {name!r} is used twice; give one of them another name")
    else:
        names.append(name)
    if kind not in KINDS:
        errors.append(f"{where}.kind: unknown metric {json.dumps(kind)}; known: {', '.join(KINDS)}")
        return errors
    need = {"regex": ("pattern",), "json_schema": ("path",), "python": ("path", "function"),
            "judge": ("endpoint", "model")}.get(kind, ())
    for key in need:
        if not isinstance(m.get(key), str) or not m[key]:
            errors.append(f"{where}.{key}: {kind} needs a non-empty string, got {json.dumps(m.get(key))}")
    return errors


def normalize(text):
    """Trimmed, every run of whitespace one space: what exact and contains compare."""
    return " ".join(text.split())


class Metric:
    """One configured metric: name, kind and score(output, reference, messages) -> float."""

    def __init__(self, name, kind, fn):
        self.name = name
        self.kind = kind
        self._fn = fn

    def score(self, output, reference, messages):
        return self._fn(output, reference, messages)


def _exact(output, reference, _messages):
    return float(normalize(output) == normalize(reference))


def _contains(output, reference, _messages):
    return float(normalize(reference) in normalize(output))


def _json_value(output):
    """The reply parsed as JSON, or a marker that it is not JSON."""
    try:
        return json.loads(output.strip())
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _json_valid(output, _reference, _messages):
    return float(_json_value(output) is not _NOT_JSON)


def _regex(where, pattern):
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"{where}.pattern: {pattern!r} is not a valid regular expression: {e}") from None
    return lambda output, _reference, _messages: float(compiled.search(output) is not None)


def _json_schema(where, path):
    import jsonschema
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except OSError as e:
        raise ConfigError(f"{where}.path: cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConfigError(f"{where}.path: {path} is not JSON: {e}") from None
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        at = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"{where}.path: {path} is not a valid JSON Schema at {at}: {e.message}") from None
    validator = cls(schema)

    def fn(output, _reference, _messages):
        value = _json_value(output)
        return float(value is not _NOT_JSON and validator.is_valid(value))
    return fn


def _chrf():
    from sacrebleu.metrics import CHRF
    chrf = CHRF()
    return lambda output, reference, _messages: float(chrf.sentence_score(output, [reference]).score)


def _rouge_l():
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return lambda output, reference, _messages: float(scorer.score(reference, output)["rougeL"].fmeasure)


def _python(where, path, function):
    """A user's scorer: FILE.py's function(output, reference[, messages]) -> number in [0, 1]."""
    if not os.path.isfile(path):
        raise ConfigError(f"{where}.path: {path}: no such file")
    spec = importlib.util.spec_from_file_location(f"loractl_scorer_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}.path: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything at import
        raise ConfigError(f"{where}.path: importing {path} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"{where}.function: {path} has no function {function!r}")
    try:
        params = inspect.signature(fn).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        takes_messages = len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):  # builtins without a signature
        takes_messages = False

    def call(output, reference, messages):
        value = fn(output, reference, messages) if takes_messages else fn(output, reference)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{function} returned {type(value).__name__} {value!r}, not a number in [0, 1]")
        value = float(value)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise ValueError(f"{function} returned {value!r}, outside [0, 1]")
        return value
    return call


# How each kind's scorer is built from its spec (where: the key errors name).
_BUILDERS = {
    "exact": lambda where, m: _exact,
    "contains": lambda where, m: _contains,
    "json_valid": lambda where, m: _json_valid,
    "regex": lambda where, m: _regex(where, m["pattern"]),
    "json_schema": lambda where, m: _json_schema(where, m["path"]),
    "chrf": lambda where, m: _chrf(),
    "rouge_l": lambda where, m: _rouge_l(),
    "python": lambda where, m: _python(where, m["path"], m["function"]),
}


def build_metrics(specs):
    """Metric objects for the validated eval.metrics, judge metrics left out. Raises
    ConfigError naming the key when a regex does not compile, a schema file is not JSON
    Schema, or a scorer file cannot be imported or lacks its function."""
    out = []
    for i, m in enumerate(specs):
        where, kind = f"eval.metrics[{i}]", m["kind"]
        if kind == "judge":
            continue
        fn = _BUILDERS[kind](where, m)
        out.append(Metric(m["name"], kind, fn))
    return out


def score(metrics, output, reference, messages=None):
    """(scores, errors) of one reply: scores {name: float} for every metric that returned
    one; errors {name: "Type: message"} for those that raised or returned no valid number,
    which are then absent from scores (never a silent 0)."""
    scores, errors = {}, {}
    for m in metrics:
        try:
            value = m.score(output, reference, messages)
            if not math.isfinite(value):
                raise ValueError(f"{m.name} gave {value!r}")
            scores[m.name] = value
        except Exception as e:  # noqa: BLE001 - a user's scorer may raise anything
            errors[m.name] = f"{type(e).__name__}: {e}"[:MAX_ERROR_CHARS]
    return scores, errors
