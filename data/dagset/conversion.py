"""SymPy expression <-> DAG tensors: the reference conversion.

`expression_to_tensors` is the source of truth for what a training target is;
`tensor_to_expression` turns a DAG (a target or a model's prediction) back into a
readable SymPy expression with the same value.
"""
import builtins
import keyword
import re
from fractions import Fraction

import sympy
import torch
from sympy import Add, Float, Integer, Mul, Pow, Rational

from data.dagset.dag_plan import DAGPlan, build_plan, plan_arrays, plan_size
from data.dagset.normalize import Div, Neg, Sub, normalize_expression, number_value


_TEXT = re.compile(r"[0-9A-Za-z.+\-*/() ]+")
_NAME = re.compile(r"[A-Za-z_]\w*")
_PYTHON_NAMES = set(dir(builtins)) | set(keyword.kwlist)


def _to_sympy(expr) -> sympy.Basic:
    if isinstance(expr, str):
        # parse_expr runs its input as Python: nothing but numbers, operators and names
        # that SymPy reads as symbols or its own functions (to be rejected by name below)
        # gets that far
        if not _TEXT.fullmatch(expr):
            raise ValueError(f"cannot parse expression {expr!r}: only numbers, + - * / ** and parentheses")
        for name in _NAME.findall(expr):
            if name in _PYTHON_NAMES or name.startswith("_"):
                raise ValueError(f"cannot parse expression {expr!r}: unsupported name '{name}'")
        try:
            return sympy.parse_expr(expr, evaluate=False)
        except Exception as e:  # SymPy's tokenizer and evaluator raise many kinds
            raise ValueError(f"cannot parse expression {expr!r}: {type(e).__name__}: {e}") from None
    if not isinstance(expr, sympy.Basic):
        raise ValueError(f"expected a SymPy expression or text, got {type(expr).__name__}")
    return expr


def _tree(expr: sympy.Basic) -> tuple[tuple, Fraction]:
    """Tree of tuples (see dag_plan.py) and exact value of a normalized expression."""
    if expr.is_Number:
        v = number_value(expr)
        return ("num", v), v
    children = [_tree(a) for a in expr.args]
    if isinstance(expr, Neg):
        (t, v), = children
        return ("add", [(t, -1)]), -v
    if isinstance(expr, (Add, Sub)):
        coefs = [1] + [1 if isinstance(expr, Add) else -1] * (len(children) - 1)
        return ("add", [(t, c) for (t, _), c in zip(children, coefs)]), sum(
            (c * v for (_, v), c in zip(children, coefs)), Fraction(0))
    if isinstance(expr, Pow):
        (t, v), _ = children
        exps = [int(expr.exp)]
        children = children[:1]
    else:
        exps = [1] + [1 if isinstance(expr, Mul) else -1] * (len(children) - 1)
    value = Fraction(1)
    for (_, v), e in zip(children, exps):
        if v == 0 and e < 0:
            raise ValueError(f"division by zero in '{expr}'")
        value *= v ** e
    return ("mul", [(t, e) for (t, _), e in zip(children, exps)]), value


def expression_plan(expr) -> DAGPlan:
    """Canonical DAG plan of a SymPy expression (or text, parsed with evaluate=False)."""
    tree, _ = _tree(normalize_expression(_to_sympy(expr)))
    return build_plan(tree)


def expression_dag_depth(expr) -> int:
    """Smallest dag_depth that holds the expression."""
    return plan_size(expression_plan(expr))


def expression_to_tensors(expr, dag_depth: int):
    """(V_mag, V_sign, O, G) float64 tensors of shapes (1, 1, 2D), (1, 1, 2D),
    (1, 1, D, 2D), (1, 1, D) for a SymPy expression (or text), D = dag_depth."""
    if dag_depth < 1:
        raise ValueError(f"dag_depth must be >= 1, got {dag_depth}")
    expr = _to_sympy(expr)
    V_mag, V_sign, O, G, _ = plan_arrays(expression_plan(expr), dag_depth, where=expr)
    return tuple(torch.from_numpy(a)[None, None] for a in (V_mag, V_sign, O, G))


def _leaf(mag: float, sign: float) -> sympy.Basic:
    x = Float(repr(mag)) if mag != int(mag) else Integer(int(mag))
    return Neg(x) if sign < 0 and mag != 0 else x


def _coefficient(c: float) -> sympy.Basic:
    return Integer(round(c)) if abs(c - round(c)) < 1e-6 else Float(repr(c))


def _combine(pos: list, neg: list, identity, op, inverse_op, scale) -> sympy.Basic:
    """pos[0] op pos[1] ... inverse_op neg[0] ...; each term (x, c) is x scaled by c."""
    def term(x, c):
        return x if c == 1 else scale(x, c)

    ps = [term(x, c) for x, c in pos]
    ns = [term(x, c) for x, c in neg]
    head = ps[0] if len(ps) == 1 else op(*ps, evaluate=False) if ps else None
    if not ns:
        return head if head is not None else identity
    if head is None and op is Mul:
        head = identity
    elif head is None:  # -a - b: nothing to subtract from, so negate the first term
        head, ns = Neg(ns[0]), ns[1:]
    return inverse_op(head, *ns) if ns else head


def tensor_to_expression(V_mag, V_sign, O, G) -> sympy.Basic:
    """Readable SymPy expression of one DAG; leading batch/time dims of size 1 are
    allowed. Gates are read as linear when G > 0.5, coefficients within 1e-6 of an
    integer as that integer; the result has the value of the DAG's last node."""
    V_mag, V_sign, O, G = (torch.as_tensor(t).detach().double().cpu() for t in (V_mag, V_sign, O, G))
    D = G.shape[-1]
    V_mag, V_sign, O, G = V_mag.reshape(2 * D), V_sign.reshape(2 * D), O.reshape(D, 2 * D), G.reshape(D)
    nodes: list[sympy.Basic] = [_leaf(float(m), float(s)) for m, s in zip(V_mag[:D], V_sign[:D])]
    for k in range(D):
        terms = [(nodes[j], _coefficient(float(O[k, j]))) for j in range(D + k) if O[k, j] != 0]
        pos = [(x, c) for x, c in terms if c > 0]
        neg = [(x, -c) for x, c in terms if c < 0]
        if G[k] > 0.5:
            nodes.append(_combine(pos, neg, Integer(0), Add, Sub, lambda x, c: Mul(c, x, evaluate=False)))
        else:
            nodes.append(_combine(pos, neg, Integer(1), Mul, Div, lambda x, c: Pow(x, c, evaluate=False)))
    return nodes[-1]


def exact_value(expr) -> Rational:
    """Exact rational value of a SymPy arithmetic expression (or text)."""
    _, v = _tree(normalize_expression(_to_sympy(expr)))
    return Rational(v.numerator, v.denominator)
