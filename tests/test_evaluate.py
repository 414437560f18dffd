"""Tests for evaluate.py on a tiny checkpoint trained for 3 iterations: the held-out
table and JSON, --ckpt_path, --expressions_file, --expr, and one-line errors for bad input.

The runs go through runpy in this process, so torch is imported once (test_train.py runs
evaluate.py's held-out mode as a real subprocess, end to end)."""
import contextlib
import io
import json
import math
import os
import runpy
import subprocess
import sys
import warnings
from unittest import mock

import pytest
import torch

from run.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE = os.path.join(ROOT, "evaluate.py")
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--dag_depth=3",
        "--max_expr_depth=2", "--num_workers=0", "--max_iters=3", "--eval_interval=3", "--eval_iters=1"]
METRICS = ("exact", "close", "structure", "values", "sign", "op", "gate")
RATES = ("exact", "close", "structure", "values")  # yes/no per example: printed with a 95% interval
INTERVALS = tuple(f"{k}_{end}" for k in RATES for end in ("low", "high"))
N_PER_DEPTH = 8


def run(*args: str) -> tuple[int, str, str]:
    """evaluate.py in this process -> (exit status, stdout, stderr). Warnings are errors,
    since a real run would print them to stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", [EVALUATE, *args]), warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            runpy.run_path(EVALUATE, run_name="__main__")
        except SystemExit as e:
            status = e.code
    return status, stdout.getvalue(), stderr.getvalue()


def assert_one_line_error(result: tuple[int, str, str], message: str, status: int = 1) -> None:
    code, _, stderr = result
    assert code == status, stderr
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert message in stderr


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("tiny"))
    subprocess.run([sys.executable, os.path.join(ROOT, "train_predictor.py"), *TINY, f"--out_dir={out}"],
                   cwd=ROOT, env=os.environ.copy(), capture_output=True, check=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def held_out(out_dir, tmp_path_factory) -> tuple[str, dict]:
    """stdout and JSON of a real held-out run; batch_size 5 leaves a partial last batch."""
    path = tmp_path_factory.mktemp("json") / "eval.json"
    code, stdout, stderr = run(f"--out_dir={out_dir}", f"--n_per_depth={N_PER_DEPTH}", "--batch_size=5",
                               f"--json_out={path}")  # in this process: no start-up, and warnings are errors
    assert code == 0 and stderr == "", stderr
    with open(path) as f:
        return stdout, json.load(f)


def test_held_out_table(held_out):
    stdout, _ = held_out
    lines = stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["depth"])
    assert lines[header].split() == ["depth", "n", *METRICS]
    rows = [line.split() for line in lines[header + 1:]]
    assert [row[0] for row in rows] == ["0", "1", "2", "all"]
    assert [int(row[1]) for row in rows] == [N_PER_DEPTH] * 3 + [3 * N_PER_DEPTH]
    for row in rows:  # a rate, then its interval "[low,high]" around it
        assert len(row) == 2 + len(METRICS) + len(RATES)
        for i in range(len(RATES)):
            rate, (low, high) = float(row[2 + 2 * i]), map(float, row[3 + 2 * i].strip("[]").split(","))
            assert 0 <= low <= rate <= high <= 1
        assert all(0 <= float(x) <= 1 for x in row[2 + 2 * len(RATES):])


def test_held_out_json(held_out, out_dir):
    _, result = held_out
    assert result["checkpoint"] == latest_checkpoint(out_dir) and result["iter_num"] == 3
    by_depth = result["by_depth"]
    assert list(by_depth) == ["0", "1", "2"]
    for row in [*by_depth.values(), result["all"]]:
        assert list(row) == ["n", *METRICS, *INTERVALS] and all(0 <= row[k] <= 1 for k in METRICS)
        assert all(row[f"{k}_low"] <= row[k] <= row[f"{k}_high"] for k in RATES)
    assert all(row["n"] == N_PER_DEPTH for row in by_depth.values())
    assert result["all"]["n"] == 3 * N_PER_DEPTH
    for k in METRICS:  # "all" pools the examples of every depth
        weighted = sum(row["n"] * row[k] for row in by_depth.values()) / result["all"]["n"]
        assert result["all"][k] == pytest.approx(weighted)


def test_ckpt_path_and_a_fixed_held_out_set(held_out, out_dir, tmp_path):
    # a given checkpoint file needs no out_dir; another batch_size evaluates the same examples
    path, json_out = latest_checkpoint(out_dir), tmp_path / "eval.json"
    code, _, stderr = run(f"--ckpt_path={path}", f"--out_dir={tmp_path / 'none'}", f"--n_per_depth={N_PER_DEPTH}",
                          f"--batch_size={N_PER_DEPTH}", f"--json_out={json_out}")
    assert code == 0, stderr
    with open(json_out) as f:
        result = json.load(f)
    assert result["checkpoint"] == path
    for depth, row in held_out[1]["by_depth"].items():
        assert result["by_depth"][depth] == pytest.approx(row)


def test_the_model_shape_wins_over_the_recorded_config(held_out, out_dir, tmp_path):
    # a run resumed with --dag_depth=4 --block_size=64 records them in its config, while
    # its model keeps the checkpoint's dag_depth=3 and block_size=32
    ckpt = load_checkpoint(latest_checkpoint(out_dir))
    ckpt["config"] = ckpt["config"] | {"dag_depth": 4, "block_size": 64}
    path, json_out = save_checkpoint(ckpt, str(tmp_path), 3), tmp_path / "eval.json"
    code, _, stderr = run(f"--ckpt_path={path}", f"--n_per_depth={N_PER_DEPTH}", f"--json_out={json_out}")
    assert code == 0, stderr
    with open(json_out) as f:
        assert json.load(f)["all"] == pytest.approx(held_out[1]["all"])


def test_expressions_file(out_dir, tmp_path):
    expressions, json_out = tmp_path / "expressions.txt", tmp_path / "eval.json"
    expressions.write_text("# a comment\n2.5*3+1\n\n-3 / (1.5 - 2)\n  7  \n")
    code, stdout, stderr = run(f"--out_dir={out_dir}", f"--expressions_file={expressions}", f"--json_out={json_out}")
    assert code == 0, stderr
    with open(json_out) as f:
        result = json.load(f)
    records = result["expressions"]
    assert [(r["expression"], r["true"]) for r in records] == [("2.5*3+1", 8.5), ("-3 / (1.5 - 2)", 6.0), ("7", 7.0)]
    for r in records:
        assert list(r) == ["expression", "predicted", "true", *METRICS]
        assert f"{r['predicted']:.12g}" in stdout
    assert result["all"]["n"] == 3
    for k in METRICS:
        assert result["all"][k] == pytest.approx(sum(r[k] for r in records) / 3)
    assert "3 expressions, rates with 95% Wilson intervals" in stdout


def test_expr_shows_both_dags_and_values(out_dir):
    code, stdout, stderr = run(f"--out_dir={out_dir}", "--expr=2.5*3+1")
    assert code == 0, stderr
    predicted = stdout[stdout.index("predicted DAG"):stdout.index("target DAG")]
    target = stdout[stdout.index("target DAG"):stdout.index("predicted value")]
    assert all(f"n{i} = " in predicted for i in range(6))  # 3 input nodes, 3 steps
    assert [line.split() for line in target.splitlines()[1:]] == [
        ["n0", "=", "2.5"], ["n1", "=", "3"], ["n2", "=", "1"],
        ["n3", "=", "n0", "*", "n1", "log"], ["n4", "=", "n2", "+", "n3", "linear"], ["n5", "=", "n4", "linear"],
        ["=", "1", "+", "2.5*3"]]
    values = dict(line.split(":", 1) for line in stdout.splitlines() if line.startswith(("predicted value", "true")))
    assert float(values["true value"]) == 8.5
    assert math.isfinite(float(values["predicted value"]))
    assert "relative error:" in stdout


@pytest.mark.parametrize("text, step", [
    ("(2 - 1.25) / 4**2", "n4 = n3 / n2**2"),
    ("-(2 - 1.25)", "n3 = n1 - n0"),  # the training target: conversion.py folds it into -0.75
    ("-(2 + 1.25)", "n3 = -n0 - n1"),
])
def test_expr_steps_read_like_arithmetic(out_dir, text, step):
    code, stdout, stderr = run(f"--out_dir={out_dir}", f"--expr={text}")
    assert code == 0, stderr
    assert step in stdout[stdout.index("target DAG"):]


BAD_EXPRESSIONS = {
    "unparsable": ("2 +* 3", "unexpected '*'"),
    "symbol": ("x + 1", "cannot parse"),
    "function": ("sin(2)", "cannot parse"),
    "unbalanced": ("(1 + 2", "incomplete expression"),
    "python": ("__import__('os')", "cannot parse"),
    "too many tokens": (" ".join(["("] * 20 + ["1"] + [")"] * 20), "block_size=32"),
    "too many nodes": ("1 + 2 + 3 + 4", "dag_depth"),
    "huge literal": ("9" * 400, "outside the supported range"),
    "power": ("2**5", "max_coefficient=3"),
    "division by zero": ("1 / (2 - 2)", "division by zero"),
}


@pytest.mark.parametrize("text, message", BAD_EXPRESSIONS.values(), ids=BAD_EXPRESSIONS)
def test_bad_expression(out_dir, text, message):
    assert_one_line_error(run(f"--out_dir={out_dir}", f"--expr={text}"), message)


@pytest.fixture(scope="module")
def digits_out_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("digits"))
    subprocess.run([sys.executable, os.path.join(ROOT, "train_predictor.py"), *TINY, "--value_head=digits",
                    f"--out_dir={out}"], cwd=ROOT, env=os.environ.copy(), capture_output=True, check=True, timeout=120)
    return out


TOO_MANY_DIGITS = {
    "integer digits": ("12345 + 1", "max_digits=4"),
    "decimals": ("1.23456 * 2", "max_decimal_places=4"),
}


@pytest.mark.parametrize("text, message", TOO_MANY_DIGITS.values(), ids=TOO_MANY_DIGITS)
def test_digit_head_refuses_literals_it_cannot_write(digits_out_dir, text, message):
    assert_one_line_error(run(f"--out_dir={digits_out_dir}", f"--expr={text}"), message)


@pytest.mark.parametrize("text", [t for t, _ in TOO_MANY_DIGITS.values()])
def test_copy_head_reads_literals_of_any_length(out_dir, text):
    code, stdout, stderr = run(f"--out_dir={out_dir}", f"--expr={text}")
    assert code == 0, stderr
    assert ("n0 = 12345" if text.startswith("12345") else "n0 = 1.23456") in stdout  # the target DAG's input


@pytest.fixture(scope="module")
def bad_inputs(out_dir, tmp_path_factory) -> dict[str, tuple[list[str], str, int]]:
    """case -> (arguments, part of the error line, exit status)."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "empty").mkdir()
    (tmp / "text.pt").write_text("not a checkpoint\n")
    torch.save({"model": {}}, tmp / "dict.pt")
    reshaped = load_checkpoint(latest_checkpoint(out_dir))
    reshaped["model_args"] = reshaped["model_args"] | {"n_embd": 64}
    other_shape = save_checkpoint(reshaped, str(tmp / "other"), 3)
    other_kind = save_checkpoint(reshaped | {"kind": "daggpt"}, str(tmp / "kind"), 3)
    bad_line = tmp / "expressions.txt"
    bad_line.write_text("1 + 1\n2 +* 3\n")
    (tmp / "comments.txt").write_text("# nothing but a comment\n\n")
    (tmp / "spaces.txt").write_text("1" + " " * 10 ** 6 + "+ 1\n")  # tiktoken alone panics on it
    run_dir = f"--out_dir={out_dir}"
    return {
        "missing checkpoint": ([f"--ckpt_path={tmp / 'nope.pt'}"], "not found", 1),
        "missing out_dir": ([f"--out_dir={tmp / 'nope'}"], "does not exist", 1),
        "empty out_dir": ([f"--out_dir={tmp / 'empty'}"], "no checkpoint", 1),
        "not a checkpoint": ([f"--ckpt_path={tmp / 'text.pt'}"], "not a loadable checkpoint", 1),
        "not a training checkpoint": ([f"--ckpt_path={tmp / 'dict.pt'}"], "not a train_predictor.py checkpoint", 1),
        "checkpoint of another shape": ([f"--ckpt_path={other_shape}"], "does not fit", 1),
        "checkpoint of another kind": ([f"--ckpt_path={other_kind}"], "holds a 'daggpt' model, not a train_predictor.py", 1),
        "missing expressions_file": ([run_dir, f"--expressions_file={tmp / 'nope.txt'}"], "No such file", 1),
        "bad expression line": ([run_dir, f"--expressions_file={bad_line}"], f"{bad_line}:2: unexpected '*'", 1),
        "no expressions": ([run_dir, f"--expressions_file={tmp / 'comments.txt'}"], "no expressions", 1),
        "two modes": ([run_dir, "--expr=1", f"--expressions_file={bad_line}"], "give one of --expr", 1),
        "config error": ([run_dir, "--n_per_depth=many"], "config error: key 'n_per_depth'", 2),
        "bad read_as": ([run_dir, "--read_as=tidy"], "read_as must be 'respaced' or 'written'", 1),
        "a million spaces": ([run_dir, f"--expressions_file={tmp / 'spaces.txt'}"],
                             f"{tmp / 'spaces.txt'}:1: '1 + 1' is 1000002 tokens, more than block_size=32", 1),
        "json_out a directory": ([run_dir, f"--json_out={tmp}"], f"json_out={str(tmp)!r} is a directory", 1),
    }


@pytest.mark.parametrize("case", [
    "missing checkpoint", "missing out_dir", "empty out_dir", "not a checkpoint", "not a training checkpoint",
    "checkpoint of another shape", "checkpoint of another kind", "missing expressions_file", "bad expression line", "no expressions",
    "two modes", "config error", "bad read_as", "a million spaces", "json_out a directory"])
def test_bad_input(bad_inputs, case):
    args, message, status = bad_inputs[case]
    assert_one_line_error(run(*args), message, status)


def after_checkpoint_line(stdout: str) -> list[str]:
    """The lines printed after "checkpoint <path> (iter 3)": what the model did."""
    lines = stdout.splitlines()
    return lines[[i for i, line in enumerate(lines) if line.startswith("checkpoint ")][0] + 1:]


def test_texts_are_read_as_the_run_read_them(out_dir):
    code, stdout, stderr = run(f"--out_dir={out_dir}", "--expr=3*4-2")
    assert code == 0 and "expression: 3*4-2 (5 tokens)" in stdout, stderr
    code, stdout, stderr = run(f"--out_dir={out_dir}", "--expr=3*4-2", "--read_as=respaced")
    assert code == 0 and "expression: 3*4-2 (5 tokens, read as '3 * 4 - 2')" in stdout, stderr
    ckpt = load_checkpoint(latest_checkpoint(out_dir))  # a run that trained respaced reads so by default
    respaced = save_checkpoint(ckpt | {"config": ckpt["config"] | {"respace": True}},
                               os.path.join(out_dir, "respaced"), 3)
    assert after_checkpoint_line(run(f"--ckpt_path={respaced}", "--expr=3*4-2")[1]) == \
        after_checkpoint_line(run(f"--out_dir={out_dir}", "--expr=3*4-2", "--read_as=respaced")[1])


def test_the_held_out_set_is_tidy_whatever_forms_the_run_trained_on(held_out, out_dir):
    ckpt = load_checkpoint(latest_checkpoint(out_dir))
    forms = {"p_neg_group": 0.5, "p_redundant_parens": 0.5, "p_no_spaces": 0.5, "respace": True}
    styled = save_checkpoint(ckpt | {"config": ckpt["config"] | forms}, os.path.join(out_dir, "styled"), 3)
    code, stdout, stderr = run(f"--ckpt_path={styled}", f"--n_per_depth={N_PER_DEPTH}", "--batch_size=5")
    assert code == 0, stderr
    assert after_checkpoint_line(stdout) == after_checkpoint_line(held_out[0])


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qa")
    (tmp / "arithmetic__add.txt").write_text("What is 2 + 3?\t5\nSum 0.5 and 0.25.\t0.75\n")
    (tmp / "arithmetic__div.txt").write_text("Divide 6 by 4.\t3/2\n")
    return tmp


def test_qa_file_rows_per_file_and_json(out_dir, qa_dir, tmp_path):
    json_out = tmp_path / "qa.json"
    code, stdout, stderr = run(f"--out_dir={out_dir}", f"--qa_file={qa_dir / '*.txt'}", f"--json_out={json_out}")
    assert code == 0 and stderr == "", stderr
    lines = after_checkpoint_line(stdout)
    assert lines[0] == "3 questions read as written; exact answers with 95% Wilson intervals"
    assert [line.split()[:2] for line in lines[2:]] == [["arithmetic__add", "2"], ["arithmetic__div", "1"],
                                                         ["all", "3"]]
    result = json.loads(json_out.read_text())
    assert set(result) == {"checkpoint", "iter_num", "arithmetic__add", "arithmetic__div", "all"}
    assert result["all"]["n"] == 3 and result["all"]["low"] <= result["all"]["exact"] <= result["all"]["high"]
    code, stdout, _ = run(f"--out_dir={out_dir}", f"--qa_file={qa_dir / 'arithmetic__div.txt'}")
    assert code == 0 and [line.split()[:2] for line in after_checkpoint_line(stdout)[2:]] == [["arithmetic__div", "1"]]


@pytest.mark.parametrize("text, message", [
    ("What is 2 + 3?\t5\nWhat is 2 + 3?\n", "bad.txt:2: expected question<TAB>answer"),
    ("What is 2 + 3?\tfive\n", "bad.txt:1: answer 'five' is not an integer, a decimal or a fraction p/q"),
    ("Calculate 1 + 2 + 3 + 4.\t10\n", "has 4 literals and needs dag_depth >= 4, more than the checkpoint's "
                                        "dag_depth=3: the questions need a checkpoint with dag_depth >= 4"),
])
def test_qa_file_bad_lines(out_dir, tmp_path, text, message):
    (tmp_path / "bad.txt").write_text(text)
    assert_one_line_error(run(f"--out_dir={out_dir}", f"--qa_file={tmp_path / 'bad.txt'}"), message)


def test_qa_file_bad_arguments(out_dir, qa_dir, tmp_path):
    run_dir = f"--out_dir={out_dir}"
    assert_one_line_error(run(run_dir, f"--qa_file={tmp_path / 'nope.txt'}"), "--qa_file: ")
    assert_one_line_error(run(run_dir, f"--qa_file={tmp_path / '*.txt'}"), "no file matches")
    assert_one_line_error(run(run_dir, "--qa_file= "), "--qa_file is empty")
    assert_one_line_error(run(run_dir, f"--qa_file={qa_dir / '*.txt'}", "--expr=1"), "give one of --expr")
    assert_one_line_error(run(run_dir, f"--qa_file={qa_dir / '*.txt'}", "--read_as=written"),
                          "questions are read as written")
