"""
Random arithmetic expression text, the raw material of the DAG training stream.

generate_expression(seed, depth) returns text a person would write, such as
"784.1508 - (3 + -2.5) * 18.4", and always the same text for the same arguments.
While the text is built, every value it computes when parsed the usual way
(Python, sympy: precedence, then left to right) is tracked exactly with Fractions,
so the text never divides by zero and every nonzero intermediate value has a
magnitude within [1e-30, 1e30]. Anything that breaks a rule is redrawn from the
same rng, which keeps the output deterministic.

By default the text is tidy: single spaces around binary operators, no trailing
zeros, parentheses only where drawn by p_parens. The style options write it the other
ways people type the same computation, each with its own probability (all off by
default, and an option at 0 draws nothing from the rng, so the default texts of a seed
never change):
- p_trailing_zeros: a literal gets trailing zeros, `3` -> `3.0`, `12.5` -> `12.50`
  (at most max(max_decimal_places, decimals + 1) decimals);
- p_no_spaces: the expression is written without spaces around its binary operators,
  `3*4-2`, `4--(2/8)`, or (half of these) only around `*` and `/`, `3*4 - 2`;
- p_space_in_parens: a parenthesized group gets spaces inside, `( 3 + 4 )`;
- p_neg_group: a parenthesized group (or the whole expression) is negated, `-(a - b)`,
  `2 * -(3 + 4)`, `5 - -(1 + 2)`, and so is a literal, `-(3)`, `-(-3)`, `--3`, `5 - -3`;
- p_redundant_parens: a literal is parenthesized, `(3)`, `(-2.5)`, or the whole
  expression is, `(1 + 2)`.
None of them changes a value's magnitude, so the exactness rules above still hold.
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
                        p_power: float = 0.0, *, p_trailing_zeros: float = 0.0, p_no_spaces: float = 0.0,
                        p_space_in_parens: float = 0.0, p_neg_group: float = 0.0,
                        p_redundant_parens: float = 0.0) -> str:
    """Return the text of a random expression with `depth` binary operations (the
    style options are described in the module docstring)."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if max_digits < 1:
        raise ValueError(f"max_digits must be >= 1, got {max_digits}")
    if max_decimal_places < 0:
        raise ValueError(f"max_decimal_places must be >= 0, got {max_decimal_places}")
    if not ops or ops.strip(OPS):
        raise ValueError(f"ops must be a non-empty string over {OPS!r}, got {ops!r}")
    for name, p in (("p_unary_minus", p_unary_minus), ("p_parens", p_parens), ("p_power", p_power),
                    ("p_trailing_zeros", p_trailing_zeros), ("p_no_spaces", p_no_spaces),
                    ("p_space_in_parens", p_space_in_parens), ("p_neg_group", p_neg_group),
                    ("p_redundant_parens", p_redundant_parens)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p}")
    rng = random.Random(seed)
    uniform = rng.random

    def below(n: int) -> int:
        # rng.randrange costs ~1 us; a scaled float is uniform enough while n fits 53 bits
        return int(uniform() * n) if n <= _EXACT_FLOAT else rng.randrange(n)

    def chance(p: float) -> bool:
        # an option at 0 draws nothing, so the default texts of a seed never change
        return p > 0.0 and uniform() < p

    def parenthesize(text: str) -> str:
        return f"( {text} )" if chance(p_space_in_parens) else f"({text})"

    def literal() -> tuple:
        while True:
            n_digits = int(uniform() * max_digits) + 1
            low = 10 ** (n_digits - 1) if n_digits > 1 else 0
            num = low + below(10 ** n_digits - low)
            den = 1
            text = str(num)
            n_decimals = 0
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
                    n_decimals = n_frac
            if chance(p_trailing_zeros):  # 3 -> 3.0, 12.5 -> 12.50: same value
                n_zeros = 1 if uniform() < 0.7 else 1 + below(max(1, max_decimal_places - n_decimals))
                text += ("." if not n_decimals else "") + "0" * n_zeros
            # -0 is noise and -1 would read like a sign factor downstream
            if uniform() < p_unary_minus and num != 0 and num != den:
                num = -num
                text = "-" + text
            if uniform() < p_power:
                exponent = 2 if uniform() < 0.5 else 3
                num, den = num ** exponent, den ** exponent
                text = f"({text})**{exponent}" if text[0] == "-" else f"{text}**{exponent}"
            if chance(p_redundant_parens):  # (3), (-2.5), (2**3)
                text = parenthesize(text)
            if num != 0 and abs(num) != den and chance(p_neg_group):  # -(3), -(-3), --3
                num = -num
                text = "-" + (text if text[0] == "(" or uniform() < 0.5 else parenthesize(text))
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
        if chance(p_neg_group):  # -(a - b): a unary minus binds tighter than * and /
            return "-" + parenthesize(node[0]), _ATOM, -node[2], -node[2], ()
        return parenthesize(node[0]), _ATOM, node[2], node[2], ()

    # p_no_spaces: the expression is written "3*4-2" or, as often, "3*4 - 2"
    tight = ("+-*/" if uniform() < 0.5 else "*/") if chance(p_no_spaces) else ""

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
                spaced = op if op in tight else f" {op} "
                return f"{left[0]}{spaced}{right[0]}", prec, value, first, tail + terms

    text = build(depth)[0]
    if depth and chance(p_neg_group):
        text = "-" + parenthesize(text)
    elif chance(p_redundant_parens) and text[0] != "(":
        text = parenthesize(text)
    return text
