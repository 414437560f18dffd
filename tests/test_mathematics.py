"""The Mathematics Dataset's arithmetic modules (data/mathematics/): reading questions,
exact execution of their DAGs (data/dagset/exact_executor.py), the dataset's answer format,
and prepare.py's parts that need no generator environment.

tests/fixtures/mathematics_sample.tsv holds real generator output (split, module,
question, answer per line), drawn by `python data/mathematics/prepare.py` (seed 0,
per_train_module 30000, per_test_module 10000): from each file its first 4 lines and its
longest question and longest answer.
"""
import os
import random
import re
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from data.dagset.dag_plan import build_plan, plan_arrays, plan_size
from data.dagset.fast_parse import parse_text
from data.dagset.generate_expression import generate_expression
from data.mathematics.answers import format_benchmark_answer, read_benchmark_answer
from data.mathematics import prepare
from data.mathematics.prepare import (EXTRAPOLATION_MODULES, INTERPOLATION_MODULES, module_splits,
                                      parse_generate_output, printed, stream_seed)
from data.mathematics.questions import parse_question, question_dag_depth, question_plan, question_targets
from models.dag_executor import DAGExecutor
from data.dagset.exact_executor import execute_exact

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "mathematics_sample.tsv")


def fixture_lines() -> list[list[str]]:
    with open(FIXTURE, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def test_fixture_covers_every_module_and_split():
    seen = {(split, module) for split, module, *_ in fixture_lines()}
    assert seen == {(s, m) for m in INTERPOLATION_MODULES + EXTRAPOLATION_MODULES for s in module_splits(m)}


def test_fixture_round_trips_exactly():
    """Every real question reads, its target DAG executed exactly gives the dataset's
    answer value, and the answer written from that value is the dataset's string."""
    forms = set()
    for split, module, question, answer in fixture_lines():
        q = parse_question(question)
        forms.add(q.form)
        assert [question[lit.start:lit.end] for lit in q.literals] == [lit.text for lit in q.literals]
        assert re.findall(r"[0-9]+(?:\.[0-9]+)?", q.expression) == [lit.text for lit in q.literals]  # text order
        depth = question_dag_depth(q)
        t = question_targets(q, depth)
        value = execute_exact(t.magnitudes, t.V_sign, t.O, t.G)
        assert value == t.value == read_benchmark_answer(answer), question
        assert format_benchmark_answer(value, [lit.text for lit in q.literals]) == answer, question
        assert [q.literals[i].value for i in t.sources] == [m for m in t.magnitudes[:len(t.sources)]]
    assert forms == {"add", "sub", "less_than", "difference", "mul", "div", "expression"}


@pytest.mark.parametrize("question, form, expression, literals", [
    ("What is 5 less than 12?", "less_than", "-5 + 12", ["5", "12"]),
    ("Subtract -3 from 4.", "less_than", "-(-3) + 4", ["3", "4"]),
    ("What is the difference between 3 and 10?", "difference", "-3 + 10", ["3", "10"]),
    ("What is the distance between 10 and -3?", "difference", "10 - (-3)", ["10", "3"]),
    ("Total of 30828541939819662 and -0.4.", "add", "30828541939819662 + (-0.4)", ["30828541939819662", "0.4"]),
    ("What is 303737 times -0.13?", "mul", "303737 * (-0.13)", ["303737", "0.13"]),
    ("-565558 times 11", "mul", "-565558 * 11", ["565558", "11"]),
    ("Divide 138288 by 24.", "div", "138288 / 24", ["138288", "24"]),
    ("Calculate -5 divided by 7295835.", "div", "-5 / 7295835", ["5", "7295835"]),
    ("Calculate (54/(-6))/234*(96/(-21))/(-16).", "expression", "(54/(-6))/234*(96/(-21))/(-16)",
     ["54", "6", "234", "96", "21", "16"]),
    ("What is the value of -2 - (-465)/(-4)?", "expression", "-2 - (-465)/(-4)", ["2", "465", "4"]),
    ("Work out -4.867 + 2438115.", "expression", "-4.867 + 2438115", ["4.867", "2438115"]),
    ("-188571479*-160", "expression", "-188571479*-160", ["188571479", "160"]),
])
def test_question_forms(question, form, expression, literals):
    q = parse_question(question)
    assert (q.form, q.expression, [lit.text for lit in q.literals]) == (form, expression, literals)
    assert all(question[lit.start:lit.end] == lit.text for lit in q.literals)  # "24." is no literal


def test_difference_is_never_negative_and_minus_one_is_a_sign():
    for question in ("What is the difference between 3 and 10?", "What is the difference between 10 and 3?"):
        assert question_targets(parse_question(question), 2).value == 7
    t = question_targets(parse_question("Calculate (-10)/(-1)*7."), 3)  # (-1) is a sign, no node
    assert t.value == 70 and t.sources == (0, 2) and t.magnitudes == (10, 7, 0)


@pytest.mark.parametrize("question, answer, steps", [
    ("Evaluate (6 + (-1 - 6))/(-1).", 1, 1),  # real questions whose root product is one sum
    ("What is the value of (-4 - 7 - -5)*-1?", 6, 1),  # times -1: the sum's coefficients negated
    ("Calculate (18/4 + (-2)/4)*-1.", -4, 3),  # and no fourth step, -1 * node
    ("(-1)/((-1)/(7 + 7))", 14, 1),  # a root sum that is also a divisor's factor
])
def test_sign_of_a_root_product_of_one_sum(question, answer, steps):
    q = parse_question(question)
    t = question_targets(q, question_dag_depth(q))
    assert t.value == answer == execute_exact(t.magnitudes, t.V_sign, t.O, t.G)
    assert len(question_plan(q).steps) == steps


@pytest.mark.parametrize("question, message", [
    ("Frobnicate 3 and 4.", "is in none of the arithmetic modules' forms"),
    ("What is x plus 2?", "is in none of the arithmetic modules' forms"),
    ("", "is in none of the arithmetic modules' forms"),
    ("What is 3 +?", "incomplete expression"),
    ("Calculate 2**3.", "has a power '**'"),
    ("Calculate (3 + 4.", "incomplete expression"),
])
def test_bad_question_is_a_value_error_naming_it(question, message):
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        parse_question(question)
    assert repr(question) in str(e.value) and "\n" not in str(e.value)


def test_too_small_dag_depth_says_which_fits():
    q = parse_question("What is -10 + 1 + 5 - 7 - 8?")
    with pytest.raises(ValueError, match=r"needs dag_depth >= 5 .* but dag_depth is 4"):
        question_targets(q, 4)


@pytest.mark.parametrize("value, literals, text", [
    (Fraction(-14000219, 2), ["28000438", "2"], "-14000219/2"),
    (Fraction(-1, 79), ["1", "79"], "-1/79"),
    (Fraction(0), ["0", "5"], "0"),
    (Fraction("30828541939819661.6"), ["30828541939819662", "0.4"], "30828541939819661.6"),
    (Fraction("0.0000522"), ["0.0522", "0.001"], "0.0000522"),
    (Fraction(-6221138), ["565558", "11.0"], "-6221138"),
    (Fraction(10) ** 20, ["0.5"], "100000000000000000000"),
])
def test_answer_format(value, literals, text):
    assert format_benchmark_answer(value, literals) == text
    assert read_benchmark_answer(text) == value


def test_decimal_answer_rounds_to_28_digits_as_the_dataset():
    """display.Decimal divides in the default decimal context: 28 significant digits."""
    value = Fraction("1234567890123456789012345678.9")
    assert format_benchmark_answer(value, ["1.5"]) == "1234567890123456789012345679"


def test_answer_format_errors():
    with pytest.raises(ValueError, match="no terminating decimal"):
        format_benchmark_answer(Fraction(1, 3), ["0.5", "3"])
    for text in ("", "abc", "1e5", " 5", "+5", "1/0", "1.", ".5", "--1", "1/-2", "2/3/4"):
        with pytest.raises(ValueError, match="answer"):
            read_benchmark_answer(text)
    assert read_benchmark_answer("-0.0000522") == Fraction(-522, 10 ** 7)


def _tree_value(node: tuple) -> Fraction:
    """Plain Fraction arithmetic over fast_parse's tree: the reference."""
    kind, body = node
    if kind == "num":
        return body
    if kind == "add":
        return sum((c * _tree_value(child) for child, c in body), Fraction(0))
    value = Fraction(1)
    for child, e in body:
        value *= _tree_value(child) ** e
    return value


def test_exact_executor_matches_fraction_arithmetic():
    """Random expressions: the exact executor on their targets equals Fraction arithmetic
    on the parse tree and dag_plan's own exact value, at the plan's depth and padded."""
    for seed in range(300):
        text = generate_expression(seed, seed % 6, max_digits=9, max_decimal_places=5)
        tree = parse_text(text)
        plan = build_plan(tree)
        for depth in (plan_size(plan), plan_size(plan) + 2):
            V_mag, V_sign, O, G, value = plan_arrays(plan, depth)
            magnitudes = [m for m, _ in plan.values] + [0] * (depth - len(plan.values))
            assert execute_exact(magnitudes, V_sign, O, G) == value == _tree_value(tree), text


def _random_dag(rng: random.Random, D: int, linear_only: bool):
    magnitudes = [Fraction(rng.randint(0, 99), rng.choice((1, 2, 4))) for _ in range(D)]  # exact in float64
    V_sign = np.array([rng.choice((-1.0, 1.0)) for _ in range(D)] + [1.0] * D)
    O = np.zeros((D, 2 * D))
    G = np.array([1.0 if linear_only or rng.random() < 0.5 else 0.0 for _ in range(D)])
    for k in range(D):
        for j in rng.sample(range(D + k), min(D + k, rng.randint(1, 3))):
            O[k, j] = rng.randint(-2, 2)
    return magnitudes, V_sign, O, G


def test_exact_executor_matches_float_executor():
    """Random hard DAGs: equal to the float executor exactly for sums of small numbers
    (float64 exact), and to 1e-9 with products and quotients."""
    rng = random.Random(0)
    checked = 0
    for trial in range(400):
        D = rng.randint(1, 6)
        linear_only = trial % 2 == 0
        magnitudes, V_sign, O, G = _random_dag(rng, D, linear_only)
        try:
            exact = execute_exact(magnitudes, V_sign, O, G)
        except ValueError as e:
            assert "division by zero" in str(e)
            continue
        V_mag = torch.tensor([float(m) for m in magnitudes] + [0.0] * D, dtype=torch.float64)
        x = DAGExecutor(D, backend="torch")(V_mag, *(torch.from_numpy(a) for a in (V_sign, O, G))).item()
        if linear_only:
            assert x == exact
        elif abs(exact) < 1e12:
            assert x == pytest.approx(float(exact), rel=1e-9, abs=1e-9)
        checked += 1
    assert checked > 300


def test_exact_executor_rules_and_errors():
    D = 2
    V_sign = np.array([1.0, -1.0, 1, 1])
    O = np.array([[2.0, -1.0, 0, 0], [0.0, 0, 1, 0]])  # 2a - b, copied
    assert execute_exact([Fraction(1, 3), 5], V_sign, O, np.array([1.0, 1.0])) == Fraction(2, 3) + 5
    O = np.array([[1.0, 1.0, 0, 0], [0.0, 0, 1.0, 0]])  # a * b, soft entries read hard
    assert execute_exact([Fraction(1, 3), 6], V_sign, O * 1.2, np.array([0.3, 0.9])) == -2
    assert execute_exact([0, 6], V_sign, O, np.array([0.0, 1.0])) == 0
    with pytest.raises(ValueError, match="division by zero at DAG step 0"):
        execute_exact([6, 0], V_sign, np.array([[1.0, -1.0, 0, 0], [0, 0, 1.0, 0]]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="do not match"):
        execute_exact([1, 2, 3], V_sign, O, np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="must be finite"):
        execute_exact([1, 2], V_sign, np.where(O > 0, np.inf, 0.0), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="too large to compute exactly"):
        execute_exact([3, 2], V_sign, np.array([[10 ** 9, 0, 0, 0], [0, 0, 1.0, 0]]), np.array([0.0, 1.0]))


def test_generate_printout_is_read_back():
    """generate.py wraps a problem at 80 columns, inside a long expression too."""
    problems = [("What is 1 + 2?", "3"),
                ("What is the value of (((-21)/(-18))/(((-120)/315*(-33)/44)/((-576)/(-1568))))/((12/(-24))/(8/(-3)))?",
                 "8")]
    text = "\x1b[1minterpolate/arithmetic__mixed\x1b[0m\n" + "\n".join(printed(q, a) for q, a in problems) + "\n"
    assert "(-\n  3)" in text
    assert parse_generate_output(text) == {("interpolate", "arithmetic__mixed"): [printed(q, a) for q, a in problems]}


def test_stream_seeds_are_fixed_and_distinct():
    seeds = {stream_seed(0, s, m) for s in ("train", "test") for m in INTERPOLATION_MODULES + EXTRAPOLATION_MODULES}
    assert len(seeds) == 24 and stream_seed(0, "test", "arithmetic__mul") == stream_seed(0, "test", "arithmetic__mul")


@pytest.mark.parametrize("args, message", [
    (["--modules=arithmetic__foo"], "unknown module 'arithmetic__foo'"),
    (["--per_test_module=-1"], "per_test_module must be >= 0"),
])
def test_prepare_bad_input_is_one_line(args, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prepare.py", *args])
    with pytest.raises(SystemExit) as e:
        prepare.main()  # stops before it makes the generator's environment
    err = capsys.readouterr().err
    assert e.value.code == 1 and len(err.strip().splitlines()) == 1 and message in err, err


def test_venv_dir_with_other_files_is_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="no virtual environment"):
        prepare.ensure_venv(str(tmp_path), "")
    assert (tmp_path / "notes.txt").read_text() == "keep"
