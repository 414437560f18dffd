"""Tests for data/dagset/generate_expression.py: determinism, exactness, natural text."""
import ast
import hashlib
import operator
import random
import re
from fractions import Fraction

import pytest
import sympy
from sympy.parsing.sympy_parser import parse_expr, rationalize, standard_transformations

from data.dagset.conversion import exact_value, expression_to_tensors
from data.dagset.dag_plan import build_plan, plan_arrays
from data.dagset.fast_parse import parse_text
from data.dagset.generate_expression import generate_expression

BOUND = 10 ** 30
RATIONAL = standard_transformations + (rationalize,)
BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
LITERAL = re.compile(r"\d+(?:\.\d+)?")

MIXES = [
    {},
    {"p_power": 0.3, "p_parens": 0.5},
    {"ops": "/", "p_unary_minus": 0.5},
    {"ops": "*", "max_digits": 8, "p_power": 0.3},
    {"ops": "-/", "max_digits": 1, "max_decimal_places": 0},
    {"p_unary_minus": 1.0, "p_parens": 1.0, "max_decimal_places": 8},
]


def exact_eval(text: str) -> tuple[Fraction, int, list[Fraction]]:
    """Evaluate text exactly as Python parses it: value, literal count, every sub-value."""
    values = []
    n_literals = 0

    def walk(node: ast.expr) -> Fraction:
        nonlocal n_literals
        if isinstance(node, ast.Constant):
            n_literals += 1
            value = Fraction(ast.get_source_segment(text, node))  # the literal's digits, not a float
        elif isinstance(node, ast.UnaryOp):
            assert isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant), text
            value = -walk(node.operand)
        elif isinstance(node.op, ast.Pow):
            assert isinstance(node.left, (ast.Constant, ast.UnaryOp)), text
            assert isinstance(node.right, ast.Constant) and node.right.value in (2, 3), text
            value = walk(node.left) ** node.right.value
        else:
            value = BINOPS[type(node.op)](walk(node.left), walk(node.right))
        values.append(value)
        return value

    return walk(ast.parse(text, mode="eval").body), n_literals, values


def check_natural(text: str, depth: int, ops: str) -> None:
    assert text == text.strip() and "  " not in text, text
    # binary operators are the only space-separated tokens
    assert all(op in ops for op in text.split(" ")[1::2]), text
    assert len(text.split(" ")[1::2]) == depth, text
    assert "((" not in text and "--" not in text and "-(" not in text, text
    for m in re.finditer("- -", text):  # binary minus of a negative literal, never a double sign
        assert m.start() >= 2 and (text[m.start() - 2].isdigit() or text[m.start() - 2] == ")"), text
    assert not re.search(r"-[01](?![\d.])", text), text
    assert not re.search(r"\*1(?![\d.])", text), text
    for m in re.finditer(r"\(-?[\d.]+\)", text):
        assert m.group().startswith("(-") and text[m.end():m.end() + 2] == "**", text
    if text.startswith("("):
        level = 0
        for i, char in enumerate(text):
            level += {"(": 1, ")": -1}.get(char, 0)
            if level == 0:
                break
        assert i < len(text) - 1, text


def check_literals(text: str, max_digits: int, max_decimal_places: int) -> None:
    for literal in LITERAL.findall(re.sub(r"\*\*\d", "", text)):
        whole, _, frac = literal.partition(".")
        assert len(whole) <= max_digits and (whole == "0" or not whole.startswith("0")), text
        assert len(frac) <= max_decimal_places and not frac.endswith("0"), text


def test_deterministic_and_leaves_global_rng_alone():
    state = random.getstate()
    for seed in range(50):
        kwargs = MIXES[seed % len(MIXES)]
        assert generate_expression(seed, seed % 7, **kwargs) == generate_expression(seed, seed % 7, **kwargs)
    assert random.getstate() == state


def test_seeds_differ():
    assert len({generate_expression(seed, 4) for seed in range(200)}) == 200


@pytest.mark.parametrize("kwargs, name", [
    ({"depth": -1}, "depth"),
    ({"max_digits": 0}, "max_digits"),
    ({"max_decimal_places": -1}, "max_decimal_places"),
    ({"ops": ""}, "ops"),
    ({"ops": "+^"}, "ops"),
    ({"p_unary_minus": -0.1}, "p_unary_minus"),
    ({"p_parens": 1.5}, "p_parens"),
    ({"p_power": float("nan")}, "p_power"),
    ({"p_trailing_zeros": 2}, "p_trailing_zeros"),
    ({"p_no_spaces": -1}, "p_no_spaces"),
    ({"p_space_in_parens": 1.1}, "p_space_in_parens"),
    ({"p_neg_group": float("nan")}, "p_neg_group"),
    ({"p_redundant_parens": -0.5}, "p_redundant_parens"),
])
def test_argument_validation(kwargs, name):
    args = {"seed": 0, "depth": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        generate_expression(**args)


@pytest.mark.parametrize("mix", range(len(MIXES)))
def test_text_is_exact_bounded_and_natural(mix):
    kwargs = MIXES[mix]
    ops = kwargs.get("ops", "+-*/")
    for seed in range(500):
        depth = seed % 9
        text = generate_expression(seed, depth, **kwargs)
        exact, n_literals, values = exact_eval(text)  # a zero divisor would raise here
        assert n_literals == depth + 1, text
        assert all(v == 0 or Fraction(1, BOUND) <= abs(v) <= BOUND for v in values), text
        parsed = parse_expr(text, evaluate=False, transformations=RATIONAL)
        assert parsed.doit() == sympy.Rational(exact.numerator, exact.denominator), text
        check_natural(text, depth, ops)
        check_literals(text, kwargs.get("max_digits", 4), kwargs.get("max_decimal_places", 4))


def test_only_requested_operators():
    for seed in range(200):
        text = generate_expression(seed, 5, ops="*", p_unary_minus=0.0)
        assert set(text) <= set("0123456789. *()"), text
        assert text.count("*") == 5


def test_no_unary_minus_when_disabled():
    for seed in range(200):
        assert "-" not in generate_expression(seed, 5, ops="+*/", p_unary_minus=0.0)
        # with binary minus allowed, every '-' is an operator followed by a space
        assert not re.search(r"-\S", generate_expression(seed, 5, p_unary_minus=0.0))


def test_power_always_when_certain():
    for seed in range(200):
        text = generate_expression(seed, 3, p_power=1.0)
        assert text.count("**") == 4, text


# -----------------------------------------------------------------------------
# style options: what people type


STYLE = dict(p_trailing_zeros=0.3, p_no_spaces=0.3, p_space_in_parens=0.3, p_neg_group=0.3,
             p_redundant_parens=0.3)


def test_style_options_off_keep_every_seeds_text():
    # the texts of 2,000 seeds before the style options existed (sha256 of their lines)
    mixes = [{}, {"p_power": 0.3, "p_parens": 0.5}, {"ops": "/", "p_unary_minus": 0.5},
             {"max_decimal_places": 0, "max_digits": 2}]
    h = hashlib.sha256()
    for seed in range(2000):
        h.update(generate_expression(seed, seed % 8, **mixes[seed % 4]).encode() + b"\n")
    assert h.hexdigest() == "94d68ebca26c95540e275acb31a19c072d141e8ccc25908373f06d255b1fae77"
    off = {name: 0.0 for name in STYLE}
    assert all(generate_expression(seed, 3) == generate_expression(seed, 3, **off) for seed in range(100))


def python_value(text: str) -> Fraction:
    """Exact value of text as Python parses it, literals read from their digits."""
    def ev(node):
        if isinstance(node, ast.Constant):
            return Fraction(ast.get_source_segment(text, node))
        if isinstance(node, ast.UnaryOp):
            assert isinstance(node.op, ast.USub), text
            return -ev(node.operand)
        if isinstance(node.op, ast.Pow):
            return ev(node.left) ** node.right.value
        return BINOPS[type(node.op)](ev(node.left), ev(node.right))

    return ev(ast.parse(text, mode="eval").body)


def test_styled_text_is_read_by_both_parsers_and_exact():
    seen = {"trailing zeros": 0, "no spaces": 0, "space in parens": 0, "negated group": 0,
            "double negation": 0, "parenthesized literal": 0, "negated literal": 0}
    for seed in range(2500):
        kwargs = dict(STYLE, p_power=0.1 if seed % 3 == 0 else 0.0, ops="+-*/" if seed % 5 else "-/")
        text = generate_expression(seed, seed % 5, **kwargs)
        exact = python_value(text)  # a zero divisor would raise here
        fast = plan_arrays(build_plan(parse_text(text)), 8)
        assert fast[4] == exact, text
        if seed % 4 == 0:  # the SymPy path is slower: a quarter of the texts
            assert exact_value(text) == exact, text
            ref = expression_to_tensors(text, 8)
            assert all((a == b[0, 0].numpy()).all() for a, b in zip(fast, ref)), text
        seen["trailing zeros"] += bool(re.search(r"\.\d*0(?![\d.])", text))
        seen["no spaces"] += bool(re.search(r"[\d)][-+*/][\d(-]", text))
        seen["space in parens"] += "( " in text
        seen["negated group"] += "-(" in text
        seen["double negation"] += bool(re.search(r"- ?-", text))
        seen["parenthesized literal"] += bool(re.search(r"\(\s*-?[\d.]+\s*\)(?!\*\*)", text))
        seen["negated literal"] += bool(re.search(r"-\(\s*-?[\d.]+\s*\)(?!\*\*)|(^|[^\d)\s] *)--[\d.]", text))
    assert min(seen.values()) > 100, seen


def test_style_options_write_their_forms_when_certain():
    for seed in range(100):
        text = generate_expression(seed, 3, p_trailing_zeros=1.0, p_unary_minus=0.0, p_power=0.0)
        assert all(re.fullmatch(r"\d+\.\d*0", lit) for lit in re.findall(r"[\d.]+", text)), text
        text = generate_expression(seed, 3, p_no_spaces=1.0, p_space_in_parens=0.0)
        assert " " not in text.replace(" + ", "").replace(" - ", ""), text
        text = generate_expression(seed, 2, p_neg_group=1.0)
        assert text.startswith("-("), text
        text = generate_expression(seed, 0, p_redundant_parens=1.0)
        assert re.fullmatch(r"\(-?[\d.]+\)", text), text
