"""The canonical DAG of an arithmetic expression, and its fixed-size arrays.

Both the SymPy reference path (conversion.py) and the fast text path (fast_parse.py)
describe an expression as a small tree of tuples, and everything after that is shared:

    ("num", Fraction)                     a literal (signed)
    ("add", [(child, coefficient), ...])  sum of coefficient * child   (Add, Sub, Neg)
    ("mul", [(child, exponent), ...])     product of child ** exponent (Mul, Div, Pow)

`build_plan` makes the DAG canonical, so that every way SymPy (or a person) can write
the same computation gives the same tensors:
- same-domain operations merge into one step: a - (b - c) is one linear step
  (+a, -b, +c), a / (b / c)**2 is one log step (a, b^-2, c^2);
- literals are stored as magnitudes and every sign goes into the coefficient of the
  nearest linear step (a -1 factor in a product is a sign, never a value);
- a product with no linear step above it (the root) puts its sign on its first literal
  with an odd exponent, else flips the first such linear operand, else ends in a -1 step;
  a root product that reduces to one sum, (8 - 3) * -1, negates that sum's coefficients;
- literals become the initial nodes in text order, steps are numbered in post-order,
  and unused steps copy the previous node, so the last node holds the result.
"""
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import numpy as np

# Every node's |value| is 0 or within [1e-100, 1e100]. The executor clamps far outside
# this range (1e150) and reads magnitudes below 1e-100 as zero, so every DAG the
# converter accepts executes without clamping.
MAX_NODE_VALUE = 10 ** 100
MAX_LOG10 = 100
# A product whose factors' numerators and denominators, raised to their exponents, would
# take more bits than this is not computed exactly (it would take seconds or hang, as
# 9**999999999 / 9**999999998 would): its magnitude is estimated with logarithms first.
CHEAP_BITS = 4096
MAX_EXACT_BITS = 1 << 22
MAX_EXACT_EXPONENT = 2 ** 53  # an exponent, as a float64 coefficient of O, must stay exact


def power_cost(factors) -> int:
    """Bits the exact product of (numerator, denominator, exponent) factors can take."""
    return sum(abs(e) * (abs(n).bit_length() + d.bit_length()) for n, d, e in factors)


def log10_magnitude(factors) -> float:
    """log10 |product of (n / d) ** e| over nonzero factors, without computing it
    (infinite when an exponent is beyond a float)."""
    try:
        return sum(e * (math.log10(abs(n)) - math.log10(d)) for n, d, e in factors if e)
    except OverflowError:
        return math.inf


@dataclass
class DAGPlan:
    """Initial values as (magnitude, sign) and steps as (is_linear, [(ref, coefficient)])
    where ref is ("v", i) for initial node i or ("s", k) for step k."""

    values: list[tuple[Fraction, int]]
    steps: list[tuple[bool, list[tuple[tuple[str, int], int]]]]
    divisors: list[tuple[str, int]]  # nodes that must not be 0: a / (b / c) needs c != 0


def _canon(node: tuple, divisors: list) -> tuple[list, int]:
    """Canonical fragment and sign of a tree node. Fragments are lists:
    ["leaf", magnitude, sign], ["lin", [(frag, coef)]], ["log", [(frag, exp)]].
    Fragments that are factors of a divisor are appended to divisors: flattening
    a / (b / c) into a * b^-1 * c would otherwise hide a division by c."""
    kind = node[0]
    if kind == "num":
        v = node[1]
        return (["leaf", -v, 1], -1) if v < 0 else (["leaf", v, 1], 1)
    if kind == "add":
        terms: list = []
        _linear_terms(node, 1, terms, divisors)
        if len(terms) == 1 and abs(terms[0][1]) == 1:
            return terms[0][0], terms[0][1]
        return ["lin", terms], 1
    terms = []
    sign = _log_terms(node, 1, terms, divisors, False)
    if not terms:  # a product of -1 factors only
        return ["leaf", Fraction(1), 1], sign
    if len(terms) == 1 and terms[0][1] == 1:
        return terms[0][0], sign
    return ["log", terms], sign


def _linear_terms(node: tuple, coef: int, out: list, divisors: list) -> None:
    if node[0] == "add":
        for child, c in node[1]:
            _linear_terms(child, coef * c, out, divisors)
        return
    frag, sign = _canon(node, divisors)
    # a sum that is a divisor's factor stays a node of its own: flattened into this sum,
    # it would never be emitted, and the divisor check could not find it
    if frag[0] == "lin" and not any(f is frag for f in divisors):
        out.extend((f, coef * sign * c) for f, c in frag[1])
    else:
        out.append((frag, coef * sign))


def _log_terms(node: tuple, exp: int, out: list, divisors: list, in_divisor: bool) -> int:
    """Append (frag, exponent) terms of a product to out; return the product's sign."""
    in_divisor = in_divisor or exp < 0
    if node[0] == "mul":
        sign = 1
        for child, e in node[1]:
            sign *= _log_terms(child, exp * e, out, divisors, in_divisor)
        return sign
    frag, sign = _canon(node, divisors)
    if frag[0] == "log":
        out.extend((f, exp * e) for f, e in frag[1])
        if in_divisor:
            divisors.extend(f for f, _ in frag[1])
    elif not (frag[0] == "leaf" and frag[1] == 1 and sign == -1):  # -1 is a sign, not a value
        out.append((frag, exp))
        if in_divisor:
            divisors.append(frag)
    return sign if exp % 2 else 1


def _absorb_sign(frag: list) -> bool:
    """Negate a root product in place through an operand with an odd exponent."""
    for f, e in frag[1]:
        if e % 2 and f[0] == "leaf":
            f[2] = -f[2]
            return True
    for f, e in frag[1]:
        if e % 2 and f[0] == "lin":
            f[1][:] = [(g, -c) for g, c in f[1]]  # in place: divisors refer to f
            return True
    return False


def build_plan(tree: tuple) -> DAGPlan:
    """Canonical DAG plan of an expression tree (see the module docstring)."""
    divisors: list = []
    root, sign = _canon(tree, divisors)
    values: list[tuple[Fraction, int]] = []
    steps: list = []
    refs: dict[int, tuple[str, int]] = {}  # id(fragment) -> its node

    def emit(frag: list) -> tuple[str, int]:
        if frag[0] == "leaf":
            values.append((frag[1], frag[2]))
            ref = ("v", len(values) - 1)
        else:
            operands = [(emit(f), c) for f, c in frag[1]]
            steps.append((frag[0] == "lin", operands))
            ref = ("s", len(steps) - 1)
        refs[id(frag)] = ref
        return ref

    if sign == -1 and root[0] == "leaf":
        root[2] = -root[2]
    elif sign == -1 and root[0] == "lin":  # a product that reduces to one sum: (8 - 3) * -1
        root[1][:] = [(g, -c) for g, c in root[1]]  # in place: divisors refer to root
    elif sign == -1 and not _absorb_sign(root):
        root = ["lin", [(root, -1)]]
    emit(root)
    return DAGPlan(values, steps, [refs[id(f)] for f in divisors])


def plan_size(plan: DAGPlan) -> int:
    """Smallest dag_depth that holds the plan."""
    return max(len(plan.values), len(plan.steps), 1)


def _range_error(where, what: str, log10: float) -> ValueError:
    about = f"about 1e{round(log10)}" if math.isfinite(log10) else "a power beyond any float"
    return ValueError(f"{where}: {what} ({about}) is outside the supported range: "
                      f"|value| must be 0 or within [1e-100, 1e100]")


def _check_range(n: int, d: int, where, what: str) -> None:
    if n and not (abs(n) <= MAX_NODE_VALUE * d and abs(n) * MAX_NODE_VALUE >= d):
        raise _range_error(where, what, math.log10(abs(n)) - math.log10(d))  # n / d may overflow a float


def _large_power_step(k: int, cols: list[tuple[int, int]], num: list, den: list, O, where) -> tuple[int, int]:
    """Exact (numerator, denominator) of log step k when an exponent is beyond 3: a zero
    factor ends it at once, and its magnitude is estimated with logarithms before
    anything is computed, so 9**999 / 9**998 is quick and 9**999 fails at once."""
    for col, c in cols:
        if c < 0 and num[col] == 0:
            raise ValueError(f"{where}: division by zero (DAG step {k})")
        if not -MAX_EXACT_EXPONENT <= c <= MAX_EXACT_EXPONENT:
            raise ValueError(f"{where}: DAG step {k} has the exponent {c}, beyond the "
                             f"supported {MAX_EXACT_EXPONENT}")
        O[k, col] += c
    factors = [(num[col], den[col], c) for col, c in cols]
    if any(c > 0 and f == 0 for f, _, c in factors):
        return 0, 1
    cost = power_cost(factors)
    if cost > CHEAP_BITS:
        log10 = log10_magnitude(factors)
        if not -MAX_LOG10 - 1 <= log10 <= MAX_LOG10 + 1:
            raise _range_error(where, f"the value of DAG step {k}", log10)
        if cost > MAX_EXACT_BITS:
            raise ValueError(f"{where}: DAG step {k} raises numbers to powers too large to compute exactly")
    n, d = 1, 1
    for f, g, c in factors:
        if c >= 0:
            n, d = n * f ** c, d * g ** c
        else:  # x ** -c: swap numerator and denominator, keeping d > 0
            flip = -1 if f < 0 and c % 2 else 1
            n, d = n * flip * g ** -c, d * abs(f) ** -c
    return n, d


class PlanArrays(NamedTuple):
    """A plan's DAG as fixed-size float64 arrays (D = dag_depth), and its exact value."""

    V_mag: np.ndarray  # (2D,)
    V_sign: np.ndarray  # (2D,)
    O: np.ndarray  # (D, 2D)
    G: np.ndarray  # (D,)
    value: Fraction


def plan_arrays(plan: DAGPlan, dag_depth: int, where="expression") -> PlanArrays:
    """Fixed-size float64 arrays of a plan plus the exact result. Intermediate entries
    of V_mag/V_sign hold the exact step results (the executor recomputes them; they are
    targets for inspection and losses). `where` names the expression in error messages
    (formatted only when one is raised)."""
    D = dag_depth
    n_values, n_steps = len(plan.values), len(plan.steps)
    if n_values > D or n_steps > D:
        raise ValueError(
            f"{where}: needs dag_depth >= {plan_size(plan)} ({n_values} values, "
            f"{n_steps} operations) but dag_depth is {D}")
    V_mag = np.zeros(2 * D)
    V_sign = np.ones(2 * D)
    O = np.zeros((D, 2 * D))
    G = np.ones(D)
    # exact node values as unreduced (numerator, denominator > 0) integer pairs: this is
    # the data loader's hot loop, and Fraction's gcd on every operation costs 3x more
    num, den = [0] * (2 * D), [1] * (2 * D)
    for i, (mag, sign) in enumerate(plan.values):
        num[i], den[i] = sign * mag.numerator, mag.denominator
        _check_range(num[i], den[i], where, "literal")
    for k, (linear, operands) in enumerate(plan.steps):
        G[k] = 1.0 if linear else 0.0
        if not linear and any(c > 3 or c < -3 for _, c in operands):
            n, d = _large_power_step(k, [(j if kind == "v" else D + j, c) for (kind, j), c in operands],
                                     num, den, O, where)
        else:
            n, d = (0, 1) if linear else (1, 1)
            for (kind, j), c in operands:
                col = j if kind == "v" else D + j
                O[k, col] += c
                if linear:
                    n, d = n * den[col] + c * num[col] * d, d * den[col]
                elif c >= 0:
                    n, d = n * num[col] ** c, d * den[col] ** c
                elif num[col] == 0:
                    raise ValueError(f"{where}: division by zero (DAG step {k})")
                else:  # x ** -c: swap numerator and denominator, keeping d > 0
                    flip = -1 if num[col] < 0 and c % 2 else 1
                    n, d = n * flip * den[col] ** -c, d * abs(num[col]) ** -c
        _check_range(n, d, where, f"the value of DAG step {k}")
        num[D + k], den[D + k] = n, d
    for kind, j in plan.divisors:
        if num[j if kind == "v" else D + j] == 0:
            raise ValueError(f"{where}: division by zero (a divisor's factor, node {kind}{j}, is 0)")
    last = D + n_steps - 1 if n_steps else 0
    for k in range(n_steps, D):  # pad: each unused step copies the node before it
        O[k, last] = 1.0
        num[D + k], den[D + k] = num[last], den[last]
        last = D + k
    for i in range(2 * D):
        V_mag[i] = abs(num[i]) / den[i]  # int / int is correctly rounded
        V_sign[i] = -1.0 if num[i] < 0 else 1.0
    for i, (mag, sign) in enumerate(plan.values):
        V_sign[i] = float(sign)  # a leaf keeps its sign even when it is zero
    return PlanArrays(V_mag, V_sign, O, G, Fraction(num[-1], den[-1]))
