"""SymPy side of the DAG format: the custom `Div`, `Sub`, `Neg` operations and
`normalize_expression`, which rewrites what `parse_expr(..., evaluate=False)` produces
(`Mul(-1, x)`, `Pow(x, -1)`, `Add(a, Mul(-1, b))`, negative literals, ...) into them.

Normalization keeps the order of arguments, which for SymPy's unevaluated parse is the
order of the text; the DAG's node order (see dag_plan.py) follows it.
"""
from fractions import Fraction

import sympy
from mpmath import libmp as mlib
from sympy import Add, Integer, Mul, Pow
from sympy.printing.precedence import PRECEDENCE


class _CustomOp(sympy.Function):
    """An unevaluated n-ary operation that SymPy leaves alone until `doit()`."""

    symbol = ""
    precedence = PRECEDENCE["Add"]  # read by SymPy's printer when it parenthesizes

    @classmethod
    def eval(cls, *args):
        return None  # never auto-evaluate: the structure is the point

    @classmethod
    def _should_evalf(cls, arg) -> int:
        return -1  # sympy.Function would otherwise evaluate Float arguments at once

    def _sympystr(self, printer) -> str:
        first, *rest = self.args
        # a - (b - c) and a / (b * c) keep their parentheses; (a - b) - c needs none
        return f" {self.symbol} ".join([printer.parenthesize(first, self.precedence, strict=True)]
                                       + [printer.parenthesize(a, self.precedence) for a in rest])

    def _eval_evalf(self, prec):
        return self.doit().evalf(prec)


class Sub(_CustomOp):
    """Sub(a, b, c) = a - b - c."""

    symbol = "-"

    def doit(self, **hints):
        first, *rest = [a.doit(**hints) for a in self.args]
        return first - Add(*rest)


class Div(_CustomOp):
    """Div(a, b, c) = a / b / c."""

    symbol = "/"
    precedence = PRECEDENCE["Mul"]

    def doit(self, **hints):
        first, *rest = [a.doit(**hints) for a in self.args]
        return first / Mul(*rest)


class Neg(_CustomOp):
    """Neg(x) = -x."""

    nargs = 1

    def _sympystr(self, printer) -> str:
        return "-" + printer.parenthesize(self.args[0], PRECEDENCE["Mul"], strict=True)

    def doit(self, **hints):
        return -self.args[0].doit(**hints)


def number_value(x: sympy.Basic) -> Fraction:
    """Exact value of a SymPy number leaf. A Float is read back as the shortest decimal
    that rounds to its binary value, so `Float('18.4')` means 18.4, as written; a Float
    with more precision than a float64 (SymPy gives `Float('1.00000000000000001')` the
    precision of its 18 digits) is read back at its own precision, so it too means
    what its text says."""
    if not x.is_finite:
        raise ValueError(f"non-finite number {x}")
    if x.is_Integer:
        return Fraction(int(x))
    if x.is_Rational:
        return Fraction(int(x.p), int(x.q))
    if x._prec > 53:
        return Fraction(mlib.to_str(x._mpf_, mlib.prec_to_dps(x._prec)))
    return Fraction(repr(float(x)))


def _check_supported(expr: sympy.Basic) -> None:
    if expr.is_Number:
        number_value(expr)
    elif expr.is_Symbol:
        raise ValueError(f"symbol '{expr}' is not a number: only numeric expressions are supported")
    elif not isinstance(expr, (Add, Mul, Pow, Sub, Div, Neg)):
        raise ValueError(f"unsupported operation '{expr}' ({type(expr).__name__})")
    elif isinstance(expr, Pow) and not expr.exp.is_Integer:
        raise ValueError(f"non-integer power '{expr}' is not supported (only integer exponents)")


def _group_runs(items: list, is_head) -> list[list]:
    """Split items into maximal runs of head items followed by non-head items
    (a leading run may have no head)."""
    runs: list[list] = []
    for item in items:
        if not runs or (is_head(item) and not is_head(runs[-1][-1])):
            runs.append([item])
        else:
            runs[-1].append(item)
    return runs


def _normalize_add(expr: Add) -> sympy.Basic:
    # a + b - c - d + e  ->  Add(Sub(Add(a, b), c, d), e): text order is kept, so Sub
    # groups the positive terms with the negated terms that follow them.
    terms = [normalize_expression(a) for a in expr.args]
    parts = []
    for run in _group_runs(terms, lambda t: not isinstance(t, Neg)):
        heads = [t for t in run if not isinstance(t, Neg)]
        negated = [t.args[0] for t in run if isinstance(t, Neg)]
        if not heads:  # a leading run of negated terms: -a - b + c
            parts.extend(run)
            continue
        head = heads[0] if len(heads) == 1 else Add(*heads, evaluate=False)
        parts.append(Sub(head, *negated) if negated else head)
    return parts[0] if len(parts) == 1 else Add(*parts, evaluate=False)


def _normalize_mul(expr: Mul) -> sympy.Basic:
    # -1 factors become one Neg around the product; x**-k factors become divisors.
    negative = False
    factors = []  # (normalized expr, is_divisor)
    for a in expr.args:
        if a == Integer(-1):
            negative = not negative
        elif isinstance(a, Pow) and a.exp.is_Integer and a.exp < 0:
            base = normalize_expression(a.base)
            factors.append((base if a.exp == -1 else Pow(base, -a.exp, evaluate=False), True))
        else:
            factors.append((normalize_expression(a), False))
    parts = []
    for run in _group_runs(factors, lambda f: not f[1]):
        numer = [f for f, is_div in run if not is_div]
        denom = [f for f, is_div in run if is_div]
        head = Integer(1) if not numer else numer[0] if len(numer) == 1 else Mul(*numer, evaluate=False)
        parts.append(Div(head, *denom) if denom else head)
    if not parts:
        result = Integer(1)
    else:
        result = parts[0] if len(parts) == 1 else Mul(*parts, evaluate=False)
    return Neg(result) if negative else result


def normalize_expression(expr: sympy.Basic) -> sympy.Basic:
    """Rewrite a SymPy arithmetic expression into Add/Mul/Pow(integer)/Sub/Div/Neg over
    number literals, keeping argument order. Raises ValueError naming the offending
    sub-expression for symbols, functions, non-integer powers and non-finite numbers."""
    _check_supported(expr)
    if expr.is_Number:
        return expr
    if isinstance(expr, (Sub, Div, Neg)):
        return type(expr)(*[normalize_expression(a) for a in expr.args])
    if isinstance(expr, Add):
        return _normalize_add(expr)
    if isinstance(expr, Mul):
        return _normalize_mul(expr)
    base = normalize_expression(expr.base)
    if expr.exp == -1:
        return Div(Integer(1), base)
    if expr.exp < 0:
        return Div(Integer(1), Pow(base, -expr.exp, evaluate=False))
    return Pow(base, expr.exp, evaluate=False)
