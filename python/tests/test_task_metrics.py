"""task_metrics: the eval section checked, metrics built from the libraries, one reply scored;
a scorer that raises or returns no valid number is an error for that example, never a 0."""

import json

import pytest

import task_metrics
from train_lora_support import ConfigError


def build(*specs, primary=""):
    cfg = task_metrics.validate_eval({"metrics": list(specs), "primary": primary})
    return task_metrics.build_metrics(cfg["metrics"])


def scores_of(metrics, output, reference):
    scores, errors = task_metrics.score(metrics, output, reference, [{"role": "user", "content": "q"}])
    assert errors == {}
    return scores


def test_defaults_when_the_section_is_absent():
    cfg = task_metrics.validate_eval(None)
    assert cfg == {"generate": True, "max_examples": 200, "max_new_tokens": 256, "metrics": [], "primary": "",
                   "min_improvement": 0.0, "at_checkpoints": False}
    cfg = task_metrics.validate_eval({"metrics": [{"name": "c", "kind": "chrf"}, {"name": "e", "kind": "exact"}]})
    assert cfg["primary"] == "c"  # the first metric by default


@pytest.mark.parametrize("output,reference,want", [
    ("  Go to   Settings\n", "Go to Settings", {"exact": 1.0, "contains": 1.0}),
    ("Sure. Go to Settings now.", "Go to Settings", {"exact": 0.0, "contains": 1.0}),
    ("go to settings", "Go to Settings", {"exact": 0.0, "contains": 0.0}),
])
def test_exact_and_contains_compare_collapsed_whitespace(output, reference, want):
    metrics = build({"name": "exact", "kind": "exact"}, {"name": "contains", "kind": "contains"})
    assert scores_of(metrics, output, reference) == want


def test_regex_json_valid_and_json_schema(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["order"],
                                  "properties": {"order": {"type": "integer"}}}))
    metrics = build({"name": "regex", "kind": "regex", "pattern": r"^\{"},
                    {"name": "json_valid", "kind": "json_valid"},
                    {"name": "schema", "kind": "json_schema", "path": str(schema)})
    assert scores_of(metrics, '{"order": 3}', "") == {"regex": 1.0, "json_valid": 1.0, "schema": 1.0}
    assert scores_of(metrics, '{"order": "3"}', "") == {"regex": 1.0, "json_valid": 1.0, "schema": 0.0}
    assert scores_of(metrics, '[1, 2]', "") == {"regex": 0.0, "json_valid": 1.0, "schema": 0.0}
    assert scores_of(metrics, '{"order": 3', "") == {"regex": 1.0, "json_valid": 0.0, "schema": 0.0}


def test_chrf_and_rouge_l_are_the_libraries_numbers():
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import CHRF
    metrics = build({"name": "chrf", "kind": "chrf"}, {"name": "rouge_l", "kind": "rouge_l"})
    out, ref = "Press Cancel on the orders page.", "Go to /orders and press Cancel."
    got = scores_of(metrics, out, ref)
    assert got["chrf"] == pytest.approx(CHRF().sentence_score(out, [ref]).score)
    assert got["rouge_l"] == pytest.approx(rouge_scorer.RougeScorer(["rougeL"]).score(ref, out)["rougeL"].fmeasure)
    assert 0 < got["chrf"] < 100 and 0 < got["rouge_l"] < 1
    same = scores_of(metrics, ref, ref)
    assert same["chrf"] == pytest.approx(100.0) and same["rouge_l"] == pytest.approx(1.0)


SCORER = '''
def score(output, reference):
    if "boom" in output:
        raise ValueError("cannot score " + output)
    if "big" in output:
        return 2.0
    if "text" in output:
        return "0.5"
    if "nan" in output:
        return float("nan")
    return 1.0 if output == reference else 0.25

def with_messages(output, reference, messages):
    return float(messages[-1]["content"] == "q")
'''


def test_python_scorer_errors_are_recorded_never_zero(tmp_path):
    path = tmp_path / "score.py"
    path.write_text(SCORER)
    metrics = build({"name": "py", "kind": "python", "path": str(path), "function": "score"},
                    {"name": "msgs", "kind": "python", "path": str(path), "function": "with_messages"},
                    {"name": "exact", "kind": "exact"})
    msgs = [{"role": "user", "content": "q"}]
    assert task_metrics.score(metrics, "a", "a", msgs) == ({"py": 1.0, "msgs": 1.0, "exact": 1.0}, {})
    assert task_metrics.score(metrics, "b", "a", msgs)[0]["py"] == 0.25
    for output, error in [("boom", "ValueError: cannot score boom"), ("big", "outside [0, 1]"),
                          ("text", "not a number"), ("nan", "outside [0, 1]")]:
        scores, errors = task_metrics.score(metrics, output, "a", msgs)
        assert "py" not in scores, output
        assert error in errors["py"], (output, errors)
        assert scores["exact"] == 0.0 and scores["msgs"] == 1.0  # the other metrics still score


@pytest.mark.parametrize("spec,key", [
    ({"name": "r", "kind": "regex", "pattern": "(unclosed"}, "eval.metrics[0].pattern"),
    ({"name": "r", "kind": "regex"}, "eval.metrics[0].pattern"),
    ({"name": "m", "kind": "bleu"}, "eval.metrics[0].kind"),
    ({"name": "p", "kind": "python", "path": "/nonexistent/score.py", "function": "score"}, "eval.metrics[0].path"),
    ({"name": "j", "kind": "judge", "model": "m"}, "eval.metrics[0].endpoint"),
    ("exact", "eval.metrics[0]"),
])
def test_bad_metrics_name_their_key(spec, key):
    with pytest.raises(ConfigError) as e:
        build(spec)
    assert key in str(e.value)


def test_schema_that_is_not_json_schema_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "objekt"}))
    with pytest.raises(ConfigError, match=r"eval\.metrics\[1\]\.path: .*bad\.json is not a valid JSON Schema"):
        build({"name": "e", "kind": "exact"}, {"name": "s", "kind": "json_schema", "path": str(bad)})
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"eval\.metrics\[0\]\.path: .*is not JSON"):
        build({"name": "s", "kind": "json_schema", "path": str(bad)})


def test_python_scorer_without_the_function_or_failing_import(tmp_path):
    path = tmp_path / "score.py"
    path.write_text("def other(o, r):\n    return 1\n")
    with pytest.raises(ConfigError, match=r"eval\.metrics\[0\]\.function: .* has no function 'score'"):
        build({"name": "p", "kind": "python", "path": str(path), "function": "score"})
    path.write_text("import nonexistent_module_xyz\n")
    with pytest.raises(ConfigError, match=r"eval\.metrics\[0\]\.path: importing .* ModuleNotFoundError"):
        build({"name": "p", "kind": "python", "path": str(path), "function": "score"})


def test_section_errors():
    cases = [
        ({"primary": "nope", "metrics": [{"name": "e", "kind": "exact"}]}, "eval.primary"),
        ({"metrics": [{"name": "e", "kind": "exact"}, {"name": "e", "kind": "chrf"}]}, "eval.metrics[1].name"),
        ({"max_examples": 0}, "eval.max_examples"),
        ({"generate": "yes"}, "eval.generate"),
        ({"at_checkpoints": True}, "eval.at_checkpoints"),
        ({"at_checkpoints": True, "metrics": [{"name": "j", "kind": "judge", "endpoint": "http://x", "model": "m"}]},
         "eval.at_checkpoints"),
    ]
    for raw, key in cases:
        with pytest.raises(ConfigError) as e:
            task_metrics.validate_eval(raw)
        assert key in str(e.value), raw


def test_judge_is_left_to_the_controller():
    metrics = build({"name": "j", "kind": "judge", "endpoint": "http://127.0.0.1:1/v1", "model": "m"},
                    {"name": "e", "kind": "exact"})
    assert [m.name for m in metrics] == ["e"]


def test_resolved_json_with_or_without_the_new_keys(tiny_model):
    from conftest import base_config
    from train_lora_support import validate_config
    cfg = base_config(tiny_model)
    del cfg["eval"]
    got, warnings = validate_config(cfg)
    assert warnings == []
    assert got["train"]["select"] == "last" and got["train"]["early_stopping_patience"] == 0
    assert got["eval"]["generate"] is True and got["eval"]["max_new_tokens"] == 256
    cfg = base_config(tiny_model, **{"train.select": "best", "train.early_stopping_patience": 3})
    cfg["eval"] = {"metrics": [{"name": "exact", "kind": "exact"}], "at_checkpoints": True}
    got, _ = validate_config(cfg)
    assert got["train"]["select"] == "best" and got["eval"]["primary"] == "exact"
    for key, value, needle in [("select", "first", "train.select: must be last or best"),
                               ("early_stopping_patience", -1, r"train.early_stopping_patience: must be in \[0, 1048576\]")]:
        with pytest.raises(ConfigError, match=needle):
            validate_config(base_config(tiny_model, **{f"train.{key}": value}))
