"""Tests for config_checks.validate_config: every ranged key, the checks across keys,
the device, and the checks on drawn data (block_size, dag_depth, max_coefficient)."""
import contextlib
import io
import os
import runpy
import sys
from unittest import mock

import pytest
import torch

from run.config_checks import NO_RANGE, _rule, check_data_fits, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# train_predictor.py's defaults, trimmed to what the checks read
DEFAULTS = dict(
    out_dir="out", eval_interval=100, log_interval=10, eval_iters=4, keep_checkpoints=2, batch_size=32,
    block_size=32, gradient_accumulation_steps=1, num_workers=1, max_digits=4, max_decimal_places=4,
    min_expr_depth=0, max_expr_depth=3, p_unary_minus=0.2, p_parens=0.2, p_power=0.0, n_layer=4, n_head=4,
    n_embd=128, dropout=0.0, dag_depth=4, max_coefficient=3, mag_weight=1.0, exec_weight=0.1,
    learning_rate=1e-3, max_iters=1000, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0,
    warmup_iters=50, lr_decay_iters=1000, min_lr=1e-4, device="cpu", dtype="bfloat16", seed=1337,
    init_from="scratch", wandb_run_name="", compile=False)


def message(**changes) -> str:
    with pytest.raises(ValueError) as exc:
        validate_config(DEFAULTS | changes, data=False)
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_defaults_pass_with_data_checks():
    validate_config(dict(DEFAULTS))


@pytest.mark.parametrize("key, value, allowed", [
    ("batch_size", 0, ">= 1"), ("block_size", 0, ">= 1"), ("dag_depth", 0, ">= 1"), ("n_layer", 0, ">= 1"),
    ("dropout", 1.0, "in [0, 1)"), ("dropout", -0.1, "in [0, 1)"), ("learning_rate", 0.0, "> 0"),
    ("learning_rate", float("nan"), "> 0"), ("learning_rate", float("inf"), "> 0"), ("min_lr", -1e-5, ">= 0"),
    ("num_workers", -1, ">= 0"), ("max_digits", 0, "an integer in 1..15"), ("max_digits", 16, "an integer in 1..15"),
    ("max_decimal_places", -1, "an integer in 0..14"), ("p_power", 1.5, "in [0, 1]"), ("p_parens", -0.1, "in [0, 1]"),
    ("beta1", 1.0, "in [0, 1)"), ("beta2", -0.5, "in [0, 1)"), ("weight_decay", -0.1, ">= 0"),
    ("grad_clip", -1.0, ">= 0"), ("max_iters", 0, ">= 1"), ("warmup_iters", -1, ">= 0"),
    ("eval_iters", 0, ">= 1"), ("log_interval", 0, ">= 1"), ("eval_interval", 0, ">= 1"),
    ("keep_checkpoints", 0, ">= 1"), ("gradient_accumulation_steps", 0, ">= 1"), ("max_coefficient", 0, ">= 1"),
    ("min_expr_depth", -1, ">= 0"), ("exec_weight", -1.0, ">= 0"), ("out_dir", "", "a non-empty path"),
    ("dtype", "fp8", "one of 'float32', 'bfloat16', 'float16'"),
    ("value_head", "foo", "one of 'digits', 'copy'"), ("seed", 10 ** 45, "an integer in 0..9223372036854775807"),
    ("seed", -1, "an integer in 0..9223372036854775807"), ("max_new_tokens", 10 ** 9, "an integer in 1..10000"),
    ("temperature", float("inf"), ">= 0"), ("top_k", 0, ">= 1"), ("num_samples", 0, ">= 1"),
    ("n_per_depth", 0, ">= 1"), ("dataset", "mnist", "one of 'expressions', 'mathematics'"),
])
def test_out_of_range_names_key_range_and_value(key, value, allowed):
    shown = repr(value) if isinstance(value, str) else str(value)
    assert message(**{key: value}) == f"{key} must be {allowed}, got {shown}"


def test_keys_unknown_to_the_table_pass_and_missing_keys_are_skipped():
    validate_config({"my_new_key": -5, "whatever": "x", "batch_size": 2}, data=False)
    validate_config({}, data=False)


def test_dag_depth_zero_allowed_for_a_plain_gpt():
    validate_config(DEFAULTS | {"dag_depth": 0}, dag_depth_min=0)


@pytest.mark.parametrize("changes, text", [
    (dict(n_head=3), "n_embd=128 must be a multiple of n_head=3"),
    (dict(min_expr_depth=3, max_expr_depth=2), "min_expr_depth=3 must be <= max_expr_depth=2"),
    (dict(max_expr_depth=4), "max_expr_depth=4 needs dag_depth >= 5"),
    (dict(max_digits=8, max_decimal_places=8), "max_digits + max_decimal_places must be <= 15"),
    (dict(p_power=0.1, max_coefficient=2), "max_coefficient must be >= 3 with p_power > 0"),
    (dict(dataset="mathematics", value_head="digits"), "dataset='mathematics' needs value_head='copy' and "
                                                       "respace=False, got value_head='digits', respace=False"),
    (dict(dataset="mathematics", respace=True), "got value_head='copy', respace=True"),
    (dict(math_prefixes=True), "math_prefixes=True is for dataset='mathematics' (its questions' prefixes), got "
                               "dataset='expressions'"),
])
def test_settings_that_do_not_fit_together(changes, text):
    assert text in message(**changes)


def test_full_false_checks_only_each_key():
    # a resumed run's shape comes from its checkpoint: checked later, as a whole
    validate_config(DEFAULTS | {"n_head": 3, "max_expr_depth": 9}, full=False)
    with pytest.raises(ValueError, match="grad_clip"):
        validate_config(DEFAULTS | {"grad_clip": -1.0}, full=False)


def test_every_setting_of_the_scripts_is_checked():
    """Each setting of train.py and train_predictor.py has a rule here or is checked
    where it is read, or takes any value of its type (NO_RANGE); a new setting must choose."""
    for script in ("train.py", "train_predictor.py"):
        for key in script_settings(os.path.join(ROOT, script)):
            assert _rule(key, 1) is not None or key in NO_RANGE or key == "device", (script, key)
    with pytest.raises(ValueError, match="backend must be one of 'gloo', 'nccl'"):
        validate_config({"backend": "foo"})


def script_settings(path: str) -> set[str]:
    """The config keys of a training script: the dict it hands to validate_config first."""
    class Stop(Exception):
        pass

    seen = {}

    def capture(config, *args, **kwargs):
        seen.update(config)
        raise Stop

    with mock.patch("run.config_checks.validate_config", capture), mock.patch.object(sys, "argv", [path]), \
            contextlib.redirect_stdout(io.StringIO()), pytest.raises(Stop):
        runpy.run_path(path, run_name="__main__")
    return set(seen)


def test_device_names():
    assert message(device="foo") == "device must be 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'foo'"
    assert message(device="cpu:0") == "device must be 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'cpu:0'"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda():
    assert "device='cuda:0' needs CUDA" in message(device="cuda:0")
    with pytest.raises(ValueError, match="needs CUDA"):
        validate_config(DEFAULTS | {"device": "cuda"}, full=False)


@pytest.mark.parametrize("changes, text", [
    # block_size=4 used to drop every deeper expression silently
    (dict(block_size=4), "block_size=4 is too small for expressions of depth 1"),
    (dict(block_size=12), "block_size=12 is too small for expressions of depth 3"),
    (dict(max_coefficient=2, p_power=0.5), "max_coefficient=2 is below the coefficient 3 that the data needs"),
])
def test_drawn_data_must_fit(changes, text):
    with pytest.raises(ValueError, match=text.replace("(", r"\(")):
        check_data_fits(DEFAULTS | changes, draws_per_depth=16)


def test_train_py_texts_must_fit_the_block():
    """train.py's texts: the longest template (the question evaluate.py asks), answered,
    must fit block_size for every drawn expression, not only the expression."""
    texts = DEFAULTS | {"block_size": 24, "depth_power": 2.0}
    check_data_fits(texts, draws_per_depth=16)  # the expressions alone fit
    with pytest.raises(ValueError, match=r"^block_size=24 is too small for the texts of depth 2: \d+ of 16 drawn "
                                         r"expressions, answered in the longest template, are longer \(up to \d+ "
                                         r"tokens\); raise block_size to \d+ or more"):
        check_data_fits(texts, draws_per_depth=16, texts=True)
    check_data_fits(texts | {"block_size": 64}, draws_per_depth=16, texts=True)


def test_drawn_data_check_runs_from_validate_config():
    with pytest.raises(ValueError, match="block_size=4"):
        validate_config(DEFAULTS | {"block_size": 4})
    validate_config(DEFAULTS | {"block_size": 4}, data=False)
