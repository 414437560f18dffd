"""Tests of the DAG core: normalization (data/dagset/normalize.py), the canonical DAG
plan and expression <-> tensors conversion (data/dagset/conversion.py).

The bar is exactness: for every expression the converter accepts, DAGExecutor run on
its tensors gives the exact value within a relative error of 1e-9 (absolute 1e-12 when
the value is 0). The reference is computed independently of the library, by exact
rational arithmetic over Python's own parse of the text (ast + Fraction).
"""
import ast
from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
import sympy
import torch
from sympy import Add, Float, Integer, Mul, Pow, Rational
from sympy.parsing.sympy_parser import rationalize, standard_transformations

from data.dagset.conversion import (exact_value, expression_dag_depth, expression_plan,
                                    expression_to_tensors, tensor_to_expression)
from data.dagset.generate_expression import generate_expression
from data.dagset.normalize import Div, Neg, Sub, normalize_expression
from models.dag_executor import DAGExecutor

REL_TOL = 1e-9
ABS_TOL_AT_ZERO = 1e-12
N_PROPERTY = 10_000

# -----------------------------------------------------------------------------
# independent exact reference


def exact_eval(text: str) -> Fraction:
    """Exact value of arithmetic text as Python parses it; literals are read from their
    source text, so 0.1 is exactly 1/10."""
    def ev(node):
        if isinstance(node, ast.Constant):
            return Fraction(ast.get_source_segment(text, node))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                return a / b
            if isinstance(node.op, ast.Pow):
                assert b.denominator == 1, f"non-integer exponent in {text!r}"
                return a ** int(b)
        raise AssertionError(f"unsupported syntax {ast.dump(node)} in {text!r}")

    return ev(ast.parse(text, mode="eval").body)


def relative_error(got: float, exact: Fraction) -> float:
    """Relative error of got (absolute error when exact is 0)."""
    if exact == 0:
        return abs(got)
    return float(abs(Fraction(got) - exact) / abs(exact))


def is_exact(got: float, exact: Fraction) -> bool:
    if got != got or got in (float("inf"), float("-inf")):
        return False
    return relative_error(got, exact) <= (ABS_TOL_AT_ZERO if exact == 0 else REL_TOL)


def execute(expr, dag_depth: int, backend: str = "auto") -> float:
    return DAGExecutor(dag_depth, backend=backend)(*expression_to_tensors(expr, dag_depth)).item()


def arrays(expr, dag_depth: int):
    """(V_mag (2D,), V_sign (2D,), O (D, 2D), G (D,)) as numpy arrays."""
    return tuple(t[0, 0].numpy() for t in expression_to_tensors(expr, dag_depth))


def assert_same_tensors(a, b):
    for x, y in zip(expression_to_tensors(a, max(expression_dag_depth(a), 1)),
                    expression_to_tensors(b, max(expression_dag_depth(b), 1))):
        assert x.shape == y.shape
        assert torch.equal(x, y)


def test_reference_evaluator():
    assert exact_eval("0.1 + 0.2") == Fraction(3, 10)
    assert exact_eval("-2**2") == -4
    assert exact_eval("2**-2") == Fraction(1, 4)
    assert exact_eval("(-1.5)**-3") == Fraction(-8, 27)
    assert exact_eval("7 - 3 - 2") == 2
    assert exact_eval("60 / 3 / 4") == 5
    assert exact_eval("- -3") == 3
    assert exact_eval("-784.1508 - 18.4 / 2.9") == Fraction(-57310933, 72500)


# -----------------------------------------------------------------------------
# generated expressions


def gen_kwargs(seed: int) -> dict:
    """Generator settings for a seed: every depth 0..7 with a spread of literal sizes,
    unary minus, parentheses and (one seed in five) integer powers."""
    return dict(
        depth=seed % 8,
        max_digits=1 + (seed // 8) % 4,
        max_decimal_places=(seed // 32) % 5,
        p_unary_minus=(0.0, 0.2, 0.5)[(seed // 160) % 3],
        p_parens=(0.0, 0.2, 0.6)[(seed // 480) % 3],
        p_power=0.15 if seed % 5 == 0 else 0.0,
    )


def generated_text(seed: int) -> str:
    return generate_expression(seed, **gen_kwargs(seed))


def parse(text: str, seed: int) -> sympy.Basic:
    # a share goes through sympify, the rest through parse_expr
    if seed % 10 == 3:
        return sympy.sympify(text, evaluate=False)
    return sympy.parse_expr(text, evaluate=False)


def test_executor_is_exact_on_generated_expressions():
    groups = defaultdict(list)  # dag_depth -> [(text, exact, tensors)]
    n_powers = n_padded = n_min_depth_checked = 0
    for seed in range(N_PROPERTY):
        text = generated_text(seed)
        expr = parse(text, seed)
        d_min = expression_dag_depth(expr)
        d = max(d_min, 1)
        if seed % 7 == 0:
            d = max(d, 8)  # spare steps: padding copies the result forward
            n_padded += d > d_min
        if seed % 20 == 0 and d_min > 1:  # the reported depth is the smallest that fits
            with pytest.raises(ValueError, match=f"dag_depth >= {d_min}"):
                expression_to_tensors(expr, d_min - 1)
            n_min_depth_checked += 1
        n_powers += "**" in text
        groups[d].append((text, exact_eval(text), expression_to_tensors(expr, d)))

    assert n_powers > 500 and n_padded > 1000 and n_min_depth_checked >= 200
    assert set(range(1, 9)) <= set(groups)
    worst, worst_text, worst_at_zero, failures = 0.0, None, 0.0, []
    for d, items in sorted(groups.items()):
        V_mag, V_sign, O, G = (torch.cat([t[i] for _, _, t in items]) for i in range(4))
        kernel = DAGExecutor(d, backend="kernel")(V_mag, V_sign, O, G)
        torch_out = DAGExecutor(d, backend="torch")(V_mag, V_sign, O, G)
        assert kernel.shape == (len(items), 1) and kernel.dtype == torch.float64
        target = (V_mag[:, 0, -1] * V_sign[:, 0, -1]).tolist()  # last node: the exact result
        for (text, exact, _), got, other, tgt in zip(items, kernel[:, 0].tolist(), torch_out[:, 0].tolist(), target):
            if tgt != float(exact):
                failures.append((text, d, "target", float(exact), tgt))
            if not is_exact(other, exact):
                failures.append((text, d, "torch executor", float(exact), other))
            if not is_exact(got, exact):
                failures.append((text, d, "kernel executor", float(exact), got))
            elif exact == 0:
                worst_at_zero = max(worst_at_zero, abs(got))
            elif relative_error(got, exact) > worst:
                worst, worst_text = relative_error(got, exact), text
    print(f"\nworst relative error over {N_PROPERTY} expressions: {worst:.3g} ({worst_text!r}); "
          f"worst |result| where the exact value is 0: {worst_at_zero:.3g}")
    assert not failures, f"{len(failures)} failures, first: {failures[:5]}"


# -----------------------------------------------------------------------------
# hand-written edge cases

EDGE_CASES = [
    "(-2.5)*(-2.5)", "2.5*2.5", "-(-(2))*3",
    "- -3", "-(-(-4.5))",
    "1.5*2*(-1)*3", "-1*-1*-1*7",
    "(2.5-2.5)*3",
    "0.0001/9999", "0.0001/9999/9999",
    "9999.9999**4", "9999.9999*9999.9999*9999.9999",
    "2**3", "2**-2", "(-2)**3", "(-2)**2", "(-1.5)**-3", "-2**2", "(1-3)**3*(2-5)**2",
    "2.5 * (3 - 1) / -4", "-784.1508 - 18.4 / 2.9", "1 - (2 - 3)", "1/(2/3)", "0*5+1",
    "3 - 3", "2.5*4 - 10",
    "5**0", "(-5)**0", "0**3", "0 - 0", "-0.0*3", "0.1*3 - 0.3", "1/3*3 - 1",
    "2**300/2**299", "10**50*10**49", "10**-50*10**-40", "0 * 10**500", "0 * 9999**300",
    "9**1000/9**999", "0.1**100", "00012.500 * 2.", ".5 + 5.",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_case_is_exact(text):
    exact = exact_eval(text)
    assert exact_value(text) == Rational(exact.numerator, exact.denominator)
    d_min = max(expression_dag_depth(text), 1)
    for d in (d_min, d_min + 3):
        V_mag, V_sign, _, _ = arrays(text, d)
        assert V_mag[-1] * V_sign[-1] == float(exact)
        for backend in ("kernel", "torch"):
            got = execute(text, d, backend)
            assert is_exact(got, exact), (text, d, backend, got, float(exact))


def test_tensors_of_a_small_expression():
    V_mag, V_sign, O, G = expression_to_tensors("2.5 * 3.0 + 1.0", 3)
    assert V_mag.shape == (1, 1, 6) and V_sign.shape == (1, 1, 6)
    assert O.shape == (1, 1, 3, 6) and G.shape == (1, 1, 3)
    assert all(t.dtype == torch.float64 for t in (V_mag, V_sign, O, G))
    # literals in text order, then step values: 2.5*3, +1, padding copy
    assert V_mag[0, 0].tolist() == [2.5, 3.0, 1.0, 7.5, 8.5, 8.5]
    assert V_sign[0, 0].tolist() == [1.0] * 6
    assert O[0, 0].tolist() == [
        [1, 1, 0, 0, 0, 0],  # step 0 (node 3): log step over nodes 0, 1
        [0, 0, 1, 1, 0, 0],  # step 1 (node 4): linear, node 3 + node 2
        [0, 0, 0, 0, 1, 0],  # step 2 (node 5): copy of node 4
    ]
    assert G[0, 0].tolist() == [0.0, 1.0, 1.0]
    assert is_exact(execute("2.5 * 3.0 + 1.0", 3), Fraction(17, 2))


def test_tensors_of_nested_linear_and_log_steps():
    # (1-3)**3 * (2-5)**2: two linear steps, then one log step with exponents 3 and 2
    V_mag, V_sign, O, G = arrays("(1-3)**3*(2-5)**2", 4)
    assert V_mag.tolist() == [1, 3, 2, 5, 2, 3, 72, 72]
    assert V_sign.tolist() == [1, 1, 1, 1, -1, -1, -1, -1]
    assert O.tolist() == [
        [1, -1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, -1, 0, 0, 0, 0],
        [0, 0, 0, 0, 3, 2, 0, 0],
        [0, 0, 0, 0, 0, 0, 1, 0],
    ]
    assert G.tolist() == [1, 1, 0, 1]


def test_tensors_put_signs_into_linear_coefficients():
    # -784.1508 is stored as a magnitude with coefficient -1 in the linear step
    V_mag, V_sign, O, G = arrays("-784.1508 - 18.4 / 2.9", 3)
    assert V_mag[:3].tolist() == [784.1508, 18.4, 2.9]
    assert V_sign.tolist() == [1, 1, 1, 1, -1, -1]
    assert O.tolist() == [
        [0, 1, -1, 0, 0, 0],  # 18.4 / 2.9 (post-order: the inner step first)
        [-1, 0, 0, -1, 0, 0],  # -784.1508 - step0
        [0, 0, 0, 0, 1, 0],
    ]
    assert G.tolist() == [0, 1, 1]
    assert V_mag[3] == float(Fraction(184, 29))
    assert V_mag[4] == float(Fraction(57310933, 72500))


def test_tensors_root_product_sign_goes_on_first_odd_literal():
    # 2.5 * (3 - 1) / -4: the product's sign lands on 2.5
    V_mag, V_sign, O, G = arrays("2.5 * (3 - 1) / -4", 4)
    assert V_mag[:4].tolist() == [2.5, 3, 1, 4]
    assert V_sign[:4].tolist() == [-1, 1, 1, 1]
    assert O[0].tolist() == [0, 1, -1, 0, 0, 0, 0, 0]
    assert O[1].tolist() == [1, 0, 0, -1, 1, 0, 0, 0]
    assert G[:2].tolist() == [1, 0]
    assert V_mag[-1] * V_sign[-1] == -1.25
    # (-1.5)**-3 = 1 / (-1.5)**3: the sign goes on the literal 1, the exponent is odd
    V_mag, V_sign, O, G = arrays("(-1.5)**-3", 2)
    assert V_mag.tolist()[:2] == [1, 1.5] and V_sign.tolist()[:2] == [-1, 1]
    assert O.tolist() == [[1, -3, 0, 0], [0, 0, 1, 0]] and G.tolist() == [0, 1]
    # -2**2: even exponent, no linear step: ends in a -1 step
    V_mag, V_sign, O, G = arrays("-2**2", 2)
    assert V_mag.tolist() == [2, 0, 4, 4] and V_sign.tolist() == [1, 1, 1, -1]
    assert O.tolist() == [[2, 0, 0, 0], [0, 0, -1, 0]] and G.tolist() == [0, 1]


def test_tensors_of_repeated_operands_and_minus_one_factors():
    # repeated operands stay separate nodes; the signs of (-2.5)*(-2.5) cancel
    V_mag, V_sign, O, G = arrays("2.5*2.5", 2)
    assert V_mag.tolist() == [2.5, 2.5, 6.25, 6.25] and V_sign.tolist() == [1] * 4
    assert O.tolist() == [[1, 1, 0, 0], [0, 0, 1, 0]] and G.tolist() == [0, 1]
    assert_same_tensors("(-2.5)*(-2.5)", "2.5*2.5")
    assert_same_tensors("-(-(2))*3", "2*3")
    # -1 factors are signs, never values
    V_mag, V_sign, O, G = arrays("1.5*2*(-1)*3", 3)
    assert V_mag.tolist() == [1.5, 2, 3, 9, 9, 9]
    assert V_sign.tolist() == [-1, 1, 1, -1, -1, -1]
    assert O[0].tolist() == [1, 1, 1, 0, 0, 0] and G.tolist() == [0, 1, 1]
    V_mag, V_sign, O, G = arrays("-1*-1*-1*7", 1)
    assert V_mag.tolist() == [7, 7] and V_sign.tolist() == [-1, -1]
    assert O.tolist() == [[1, 0]] and G.tolist() == [1]
    # (a - a) * b: the zero step feeds a log step
    V_mag, V_sign, O, G = arrays("(2.5-2.5)*3", 3)
    assert V_mag.tolist() == [2.5, 2.5, 3, 0, 0, 0]
    assert O.tolist() == [[1, -1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0]]
    assert G.tolist() == [1, 0, 1]
    assert execute("(2.5-2.5)*3", 3) == 0.0


def test_tensors_of_tiny_and_large_values():
    V_mag, V_sign, O, G = arrays("0.0001/9999/9999", 3)
    assert V_mag[:3].tolist() == [0.0001, 9999, 9999]
    assert O[0].tolist() == [1, -1, -1, 0, 0, 0] and G[0] == 0
    assert V_mag[3] == float(Fraction(1, 10000 * 9999 * 9999))
    V_mag, V_sign, O, G = arrays("9999.9999**4", 1)
    assert V_mag.tolist() == [9999.9999, float(Fraction(99999999, 10000) ** 4)]
    assert O.tolist() == [[4, 0]] and G.tolist() == [0]


def test_sign_placement_invariance():
    assert_same_tensors("-2*3", "2*-3")
    assert_same_tensors("2 - -3", "2 + 3")
    V_mag, V_sign, O, G = arrays("-2*3", 2)
    assert V_mag[:2].tolist() == [2, 3] and V_sign.tolist() == [-1, 1, -1, -1]
    # a - (b - c) is one linear step (+a, -b, +c)
    plan = expression_plan("1 - (2 - 3)")
    assert len(plan.steps) == 1
    V_mag, V_sign, O, G = arrays("1 - (2 - 3)", 3)
    assert O.tolist()[0] == [1, -1, 1, 0, 0, 0] and G.tolist() == [1, 1, 1]
    # a / (b / c) is one log step (a, b^-1, c)
    V_mag, V_sign, O, G = arrays("1/(2/3)", 3)
    assert O.tolist()[0] == [1, -1, 1, 0, 0, 0] and G.tolist() == [0, 1, 1]


def test_padding_copies_the_result_forward():
    for d in (1, 2, 5, 8):
        V_mag, V_sign, O, G = arrays("-4.5", d)
        assert V_mag.tolist() == [4.5] + [0.0] * (d - 1) + [4.5] * d
        assert V_sign.tolist() == [-1.0] + [1.0] * (d - 1) + [-1.0] * d
        expected_O = np.zeros((d, 2 * d))
        expected_O[0, 0] = 1
        for k in range(1, d):
            expected_O[k, d + k - 1] = 1
        assert np.array_equal(O, expected_O) and G.tolist() == [1.0] * d
        assert execute("-4.5", d) == -4.5


@pytest.mark.parametrize("text, fits", [("1+2+3+4+5", 5), ("1*2*3", 3), ("(1-3)**3*(2-5)**2", 4),
                                        ("-2**2", 2), ("7", 1), ("- -3", 1)])
def test_expression_dag_depth_is_the_smallest_that_fits(text, fits):
    assert expression_dag_depth(text) == fits
    expression_to_tensors(text, fits)
    if fits > 1:
        with pytest.raises(ValueError, match=f"dag_depth >= {fits}"):
            expression_to_tensors(text, fits - 1)


# -----------------------------------------------------------------------------
# normalize_expression


def test_normalize_rewrites_into_sub_div_neg():
    n = normalize_expression
    x = Add(Integer(2), Integer(3), evaluate=False)
    assert n(Mul(-1, Integer(7), evaluate=False)) == Neg(Integer(7))
    assert n(Mul(-1, x, evaluate=False)) == Neg(x)
    assert n(Pow(Integer(7), -1, evaluate=False)) == Div(Integer(1), Integer(7))
    assert n(Pow(x, -1, evaluate=False)) == Div(Integer(1), x)
    assert n(Pow(Integer(7), -2, evaluate=False)) == Div(Integer(1), Pow(Integer(7), 2, evaluate=False))
    assert n(Add(Integer(2), Mul(-1, Integer(3), evaluate=False), evaluate=False)) == Sub(Integer(2), Integer(3))
    e = n(sympy.parse_expr("3*4/5/6", evaluate=False))
    assert e == Div(Mul(Integer(3), Integer(4), evaluate=False), Integer(5), Integer(6))
    assert e.args == (Mul(Integer(3), Integer(4), evaluate=False), Integer(5), Integer(6))
    assert n(sympy.parse_expr("1 - 2 - 3 + 4", evaluate=False)) == Add(
        Sub(Integer(1), Integer(2), Integer(3)), Integer(4), evaluate=False)


def test_nary_sub_div():
    a, b, c = Rational(7, 2), Integer(3), Rational(-1, 4)
    assert Sub(a, b, c).doit() == a - b - c == Rational(3, 4)
    assert Div(a, b, c).doit() == a / b / c == Rational(-14, 3)
    assert Sub(Integer(10), Integer(3), Integer(2)).doit() == 5
    assert Div(Integer(60), Integer(3), Integer(4)).doit() == 5
    assert Neg(a).doit() == Rational(-7, 2)
    # unevaluated until doit, and printed in text order
    assert Sub(Integer(10), Integer(3), Integer(2)).args == (10, 3, 2)
    assert str(Sub(Integer(10), Integer(3), Integer(2))) == "10 - 3 - 2"
    assert str(Div(Integer(60), Integer(3), Integer(4))) == "60 / 3 / 4"
    # parentheses exactly where precedence needs them
    assert str(Sub(Integer(1), Sub(Integer(2), Integer(3)))) == "1 - (2 - 3)"
    assert str(Div(Integer(1), Mul(Integer(2), Integer(3), evaluate=False))) == "1 / (2*3)"
    assert str(Pow(Neg(Float("2.5")), 2, evaluate=False)) == "(-2.5)**2"
    assert str(Neg(Sub(Integer(1), Integer(2)))) == "-(1 - 2)"


def _walk(expr):
    yield expr
    for a in expr.args:
        yield from _walk(a)


def test_normalize_preserves_value_and_is_idempotent():
    rational_parse = standard_transformations + (rationalize,)
    for seed in range(500):
        text = generated_text(seed)
        exact = exact_eval(text)
        expr = parse(text, seed)
        norm = normalize_expression(expr)
        # only Add/Mul/Pow(integer >= 0)/Sub/Div/Neg over numbers, no -1 factors left
        for node in _walk(norm):
            assert node.is_Number or isinstance(node, (Add, Mul, Pow, Sub, Div, Neg)), (text, node)
            if isinstance(node, Pow):
                assert node.exp.is_Integer and node.exp >= 0, (text, node)
            if isinstance(node, Mul):
                assert Integer(-1) not in node.args, (text, node)
        assert normalize_expression(norm) == norm, text
        assert exact_value(norm) == exact_value(expr) == Rational(exact.numerator, exact.denominator), text
        # with rational literals, doit() of the normalized tree is the exact value
        rexpr = sympy.parse_expr(text, evaluate=False, transformations=rational_parse)
        assert normalize_expression(rexpr).doit() == Rational(exact.numerator, exact.denominator), text


# -----------------------------------------------------------------------------
# tensor_to_expression


def test_tensor_to_expression_keeps_the_value():
    for seed in range(500):
        text = generated_text(seed)
        exact = exact_eval(text)
        d = max(expression_dag_depth(text), 1) + seed % 3
        tensors = expression_to_tensors(text, d)
        expr = tensor_to_expression(*tensors)
        assert tensor_to_expression(*(t[0, 0] for t in tensors)) == expr
        assert is_exact(float(expr.doit()), exact), (text, str(expr))


def test_tensor_to_expression_reads_small_dags():
    # operands come in node (column) order: the literal 1 is node 2, the product node 3
    e = tensor_to_expression(*expression_to_tensors("2.5 * 3.0 + 1.0", 3))
    assert isinstance(e, Add) and str(e) == "1 + 2.5*3" and e.doit() == 8.5
    e = tensor_to_expression(*expression_to_tensors("-784.1508 - 18.4 / 2.9", 3))
    assert isinstance(e, Sub) and str(e) == "-784.1508 - 18.4 / 2.9"
    assert float(e.doit()) == float(Fraction(-57310933, 72500))
    e = tensor_to_expression(*(t[0, 0] for t in expression_to_tensors("(-1.5)**-3", 2)))
    assert isinstance(e, Div) and str(e) == "(-1) / 1.5**3"
    assert float(e.doit()) == float(Fraction(-8, 27))
    e = tensor_to_expression(*expression_to_tensors("-2**2", 2))
    assert isinstance(e, Neg) and str(e) == "-2**2" and e.doit() == -4
    e = tensor_to_expression(*expression_to_tensors("(1-3)**3*(2-5)**2", 4))
    assert str(e) == "(1 - 3)**3*(2 - 5)**2" and e.doit() == -72


# -----------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("expr, messages", [
    ("x + 1", ["cannot parse 'x + 1'", "'x' is not a number"]),
    ("2*y - 1", ["'y' is not a number"]),
    ("sin(2)", ["cannot parse", "'sin' is not a number"]),
    ("sqrt(-4)", ["'sqrt' is not a number"]),
    ("2**0.5", ["non-integer power", "'2**0.5'"]),
    ("2**3.0", ["non-integer power"]),
    ("2**(1 + 1)", ["non-integer power"]),
    ("__import__('os')", ["cannot parse"]),
    ("exec(chr(49))", ["'exec' is not a number"]),
    ("1 if 1 else 2", ["'if' is not a number"]),
    ("1 % 2", ["cannot parse", "'%'"]),
    (sympy.Symbol("x") + 1, ["symbol 'x'"]),
    (Mul(2, sympy.Symbol("y"), evaluate=False), ["symbol 'y'"]),
    (sympy.sin(Integer(2)), ["unsupported operation", "sin(2)"]),
    (Pow(Integer(-4), Rational(1, 2), evaluate=False), ["non-integer power", "sqrt(-4)"]),
    (Pow(Integer(9), Integer(10 ** 400), evaluate=False), ["exponent"]),
    (Pow(Integer(9), Integer(999999999), evaluate=False), ["outside the supported range", "about 1e954242508"]),
    ("(1", ["cannot parse"]),
    ("", ["cannot parse"]),
    ("1/0", ["division by zero"]),
    ("1/(2-2)", ["division by zero", "(2 - 2)"]),
    ("3/(1.5-1.5)", ["division by zero", "(1.5 - 1.5)"]),
    ("0**-1", ["division by zero"]),
    ("5/(2/(1-1))", ["division by zero"]),
    ("6/(5/0)", ["division by zero"]),
    ("(2-2)**-2", ["division by zero"]),
    (sympy.Float("inf") + 1, ["non-finite", "oo"]),
    (Add(sympy.Float("inf"), Integer(1), evaluate=False), ["non-finite", "oo"]),
    (sympy.nan, ["non-finite", "nan"]),
    (sympy.zoo, ["zoo"]),
    ("1 +", ["cannot parse", "'1 +'"]),
    ("10**300 * 10**300", ["outside the supported range"]),
    ("10**101", ["outside the supported range"]),
])
def test_bad_input_raises_value_error(expr, messages):
    for d in (2, 8):
        with pytest.raises(ValueError) as info:
            expression_to_tensors(expr, d)
        for m in messages:
            assert m in str(info.value)


@pytest.mark.parametrize("text", ["x + 1", "sin(2)", "2**0.5", "1/(2-2)", "1 +"])
def test_exact_value_and_depth_reject_bad_input(text):
    with pytest.raises(ValueError):
        exact_value(text)
    if "/" not in text:  # the plan alone does not divide
        with pytest.raises(ValueError):
            expression_dag_depth(text)


def test_too_small_dag_depth_names_the_depth_that_fits():
    with pytest.raises(ValueError, match=r"dag_depth >= 5") as info:
        expression_to_tensors("1+2+3+4+5", 2)
    assert "dag_depth is 2" in str(info.value)
    with pytest.raises(ValueError, match="dag_depth"):
        expression_to_tensors("1+2", 0)
    with pytest.raises(ValueError, match="float"):
        expression_to_tensors(3.5, 2)


# -----------------------------------------------------------------------------
# the range the executor runs exactly


@pytest.mark.parametrize("text", ["1" + "0" * 200, "0." + "0" * 200 + "1", "1" + "0" * 101 + " - 1",
                                  "10**-200 * 10**-200", "0.1**150", "10**99 * 10**99", "(10**50 + 1)**3",
                                  "9999**30", "1.0001**1000 * 10**100"])
def test_values_outside_the_range_are_rejected(text):
    # every node holds 0 or |value| in [1e-100, 1e100]: the range the executor runs exactly
    with pytest.raises(ValueError, match="outside the supported range"):
        expression_to_tensors(text, max(expression_dag_depth(text), 1))


def test_huge_integer_literal_raises_value_error():
    with pytest.raises(ValueError):
        expression_to_tensors("1" + "0" * 400, 2)
