"""Throughput settings in resolved.json: the effective batch, the pre-flight's micro-batch
and the kernel choices (train_lora_support, no torch needed)."""

import copy
import re

import pytest
import train_lora_support as sup
from conftest import base_config


@pytest.fixture
def cfg(tmp_path):
    return base_config(str(tmp_path))


def test_older_resolved_json_gets_defaults(cfg):
    c = copy.deepcopy(cfg)
    for key in ("batch_size_auto", "effective_batch_size", "attn_implementation", "padding_free", "liger"):
        c["train"].pop(key, None)
    out, warnings = sup.validate_config(c)
    t = out["train"]
    assert warnings == []
    assert t["effective_batch_size"] == t["batch_size"] * t["grad_accum"]
    assert (t["batch_size_auto"], t["attn_implementation"], t["padding_free"], t["liger"]) == (False, "auto", False, False)


@pytest.mark.parametrize("key,value,message", [
    ("attn_implementation", "flash3", "train.attn_implementation: must be auto, sdpa, flash_attention_2 or eager"),
    ("padding_free", "yes", 'train.padding_free: must be true, false or auto, got "yes"'),
    ("liger", 1, "train.liger: must be true, false or auto, got 1"),
    ("effective_batch_size", 0, "train.effective_batch_size: must be in [1, 1048576], got 0"),
])
def test_throughput_values_name_the_key(cfg, key, value, message):
    c = copy.deepcopy(cfg)
    c["train"][key] = value
    with pytest.raises(sup.ConfigError, match=re.escape(message)):
        sup.validate_config(c)


def test_effective_batch_must_be_the_product(cfg):
    c = copy.deepcopy(cfg)
    c["train"].update(batch_size=4, grad_accum=2, effective_batch_size=16)
    with pytest.raises(sup.ConfigError, match="train.effective_batch_size: 16 is not train.batch_size 4"):
        sup.validate_config(c)


def auto_cfg(cfg, effective=32):
    c = copy.deepcopy(cfg)
    c["train"].update(batch_size=8, grad_accum=effective // 8, effective_batch_size=effective, batch_size_auto=True)
    return sup.validate_config(c)[0]


def test_micro_batch_from_the_preflight_keeps_the_effective_batch(cfg):
    c = auto_cfg(cfg)
    assert sup.apply_micro_batch(c, {sup.MICRO_BATCH_ENV: "16"}) == 16
    assert (c["train"]["batch_size"], c["train"]["grad_accum"]) == (16, 2)


@pytest.mark.parametrize("value", ["0", "3", "64", "x"])
def test_micro_batch_must_divide_the_effective_batch(cfg, value):
    with pytest.raises(sup.ConfigError, match="want a divisor of train.effective_batch_size 32"):
        sup.apply_micro_batch(auto_cfg(cfg), {sup.MICRO_BATCH_ENV: value})


def test_micro_batch_ignored_without_auto(cfg):
    c = sup.validate_config(copy.deepcopy(cfg))[0]
    before = dict(c["train"])
    assert sup.apply_micro_batch(c, {sup.MICRO_BATCH_ENV: "16"}) is None
    assert c["train"] == before


@pytest.mark.parametrize("settings,cuda,have,want", [
    ({}, False, {"flash_attn", "liger_kernel"}, (None, False, False)),
    ({}, True, set(), (None, True, False)),
    ({}, True, {"flash_attn", "liger_kernel"}, ("flash_attention_2", True, True)),
    ({"packing": True}, True, set(), (None, False, False)),
    ({"attn_implementation": "eager"}, True, set(), ("eager", False, False)),
    ({"attn_implementation": "sdpa", "padding_free": False, "liger": False}, True, {"liger_kernel"}, ("sdpa", False, False)),
    ({"padding_free": True}, False, set(), (None, True, False)),
])
def test_kernels_auto_turns_on_what_is_installed(settings, cuda, have, want):
    t = {"attn_implementation": "auto", "padding_free": "auto", "liger": "auto", "packing": False}
    t.update(settings)
    assert sup.resolve_kernels(t, cuda, lambda name: name in have) == want


@pytest.mark.parametrize("settings,message", [
    ({"liger": True}, "train.liger true needs a CUDA GPU and the liger-kernel package"),
    ({"attn_implementation": "flash_attention_2"}, "flash_attention_2 needs a CUDA GPU and the flash-attn package"),
])
def test_kernels_asked_for_but_missing_are_refused(settings, message):
    t = {"attn_implementation": "auto", "padding_free": "auto", "liger": "auto", "packing": False}
    t.update(settings)
    with pytest.raises(sup.ConfigError, match=message):
        sup.resolve_kernels(t, False, lambda name: False)
