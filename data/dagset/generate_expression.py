"""
Random arithmetic expression text, the raw material of the DAG training stream.

generate_expression(seed, depth) returns text a person would write, such as
"784.1508 - (3 + -2.5) * 18.4", and always the same text for the same arguments.
While the text is built, every value it computes when parsed the usual way
(Python, sympy: precedence, then left to right) is tracked exactly with Fractions,
so the text never divides by zero and every nonzero intermediate value has a
magnitude within [1e-30, 1e30]. Anything that breaks a rule is redrawn from the
same rng, which keeps the output deterministic.
"""
import operator
import random
from fractions import Fraction

OPS = "+-*/"
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3  # literals and parenthesized groups bind tighter than any operator
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_BOUND = 10 ** 30
_EXACT_FLOAT = 2 ** 53

# A sub-expression is a tuple (text, prec, value, first, tail): its text parses
# as `first` followed by the (op, operand value) pairs in `tail`, folded left to
# right at precedence `prec`. Joining two chains of equal precedence without
# parentheses re-associates them, and the fold lets us check the intermediate
# values the text really computes, not the ones of the tree we drew.


def _in_bounds(num: int, den: int) -> bool:
    num = abs(num)
    return num == 0 or (num <= _BOUND * den and num * _BOUND >= den)


def generate_expression(seed: int, depth: int, max_digits: int = 4, max_decimal_places: int = 4,
                        ops: str = OPS, p_unary_minus: float = 0.2, p_parens: float = 0.2,
                        p_power: float = 0.0) -> str:
    """Return the text of a random expression with `depth` binary operations."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if max_digits < 1:
        raise ValueError(f"max_digits must be >= 1, got {max_digits}")
    if max_decimal_places < 0:
        raise ValueError(f"max_decimal_places must be >= 0, got {max_decimal_places}")
    if not ops or ops.strip(OPS):
        raise ValueError(f"ops must be a non-empty string over {OPS!r}, got {ops!r}")
    for name, p in (("p_unary_minus", p_unary_minus), ("p_parens", p_parens), ("p_power", p_power)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    rng = random.Random(seed)
    uniform = rng.random

    def below(n: int) -> int:
        # rng.randrange costs ~1 us; a scaled float is uniform enough while n fits 53 bits
        return int(uniform() * n) if n <= _EXACT_FLOAT else rng.randrange(n)

    def literal() -> tuple:
        while True:
            n_digits = int(uniform() * max_digits) + 1
            low = 10 ** (n_digits - 1) if n_digits > 1 else 0
            num = low + below(10 ** n_digits - low)
            den = 1
            text = str(num)
            if max_decimal_places and uniform() < 0.5:
                n_frac = int(uniform() * max_decimal_places) + 1
                frac = below(10 ** n_frac)
                while frac and frac % 10 == 0:
                    frac //= 10
                    n_frac -= 1
                if frac:
                    den = 10 ** n_frac
                    num = num * den + frac
                    text = f"{text}.{frac:0{n_frac}d}"
            # -0 is noise and -1 would read like a sign factor downstream
            if uniform() < p_unary_minus and num != 0 and num != den:
                num = -num
                text = "-" + text
            if uniform() < p_power:
                exponent = 2 if uniform() < 0.5 else 3
                num, den = num ** exponent, den ** exponent
                text = f"({text})**{exponent}" if text[0] == "-" else f"{text}**{exponent}"
            if _in_bounds(num, den):
                value = Fraction(num, den)
                return text, _ATOM, value, value, ()

    def group(node: tuple, required: bool) -> tuple | None:
        # Only binary sub-expressions come here; redundant parentheses are drawn by chance.
        if not (required or uniform() < p_parens):
            return node
        if node[0][0] == "(":
            # "((" reads unnatural: skip optional parentheses, redraw if they are needed
            return None if required else node
        return f"({node[0]})", _ATOM, node[2], node[2], ()

    def build(n_ops: int) -> tuple:
        if n_ops == 0:
            return literal()
        while True:
            n_left = int(uniform() * n_ops)
            op = ops[int(uniform() * len(ops))]
            left = build(n_left)
            right = build(n_ops - 1 - n_left)
            # a zero divisor only needs a new divisor, not a new left side
            while op == "/" and not right[2]:
                right = build(n_ops - 1 - n_left)
            prec = _PREC[op]
            if left[1] != _ATOM:
                left = group(left, left[1] < prec)
            if right[1] != _ATOM:
                right = group(right, right[1] < prec or (right[1] == prec and op in "-/"))
            if left is None or right is None:
                continue
            # an unparenthesized right chain of equal precedence re-associates:
            # "a + (b - c)" is written "a + b - c" and computes (a + b) - c
            first, tail = (left[3], left[4]) if left[1] == prec else (left[2], ())
            terms = ((op, right[3]),) + right[4] if right[1] == prec else ((op, right[2]),)
            value = left[2]
            for term_op, term in terms:
                value = _APPLY[term_op](value, term)
                if not _in_bounds(value.numerator, value.denominator):
                    break
            else:
                return f"{left[0]} {op} {right[0]}", prec, value, first, tail + terms

    return build(depth)[0]
