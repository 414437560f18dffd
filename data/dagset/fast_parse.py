"""Fast path from expression text to the DAG tree of dag_plan.py, without SymPy.

The streaming dataset converts every token prefix of every expression, which SymPy's
parser makes far too slow for the training loop. This parser reads the same grammar as
`sympy.parse_expr(text, evaluate=False)` for the text the generator writes (decimal
literals, + - * /, unary minus, parentheses, integer powers) and builds the tree that
conversion.py builds from SymPy's normalized expression; tests/test_streaming.py checks
that both give identical tensors on thousands of expressions and their prefixes.
"""
import re
from fractions import Fraction
from functools import lru_cache

_LEXEME = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|(\*\*|[-+*/()]))")


def lex(text: str) -> list[tuple[str, int]]:
    """The lexemes of a text (numbers, operators, parentheses), each with the offset
    just past it; ValueError at the first character outside the grammar."""
    lexemes, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _LEXEME.match(text, pos)
        if m is None:
            raise ValueError(f"cannot parse {text!r} at {text[pos:pos + 10]!r}")
        pos = m.end()
        lexemes.append((m.group(1) or m.group(2), pos))
    return lexemes


@lru_cache(maxsize=65536)
def _literal(text: str) -> Fraction:
    # every literal is parsed again in each later prefix of its expression
    return Fraction(text)


def parse_text(text: str) -> tuple:
    """DAG tree of an arithmetic text; ValueError for anything outside the grammar."""
    return parse_lexemes([lexeme for lexeme, _ in lex(text)], text)


def parse_lexemes(lexemes: list[str], text: str) -> tuple:
    """DAG tree of a lexeme list (text is only quoted in error messages)."""
    n = len(lexemes)
    pos = 0

    def peek() -> str | None:
        return lexemes[pos] if pos < n else None

    def expect_operand() -> str:
        nonlocal pos
        if pos >= n:
            raise ValueError(f"incomplete expression {text!r}")
        pos += 1
        return lexemes[pos - 1]

    def expr() -> tuple:
        nonlocal pos
        node = term()
        while peek() in ("+", "-"):
            coef = 1 if lexemes[pos] == "+" else -1
            pos += 1
            node = ("add", [(node, 1), (term(), coef)])
        return node

    def term() -> tuple:
        nonlocal pos
        node = unary()
        while peek() in ("*", "/"):
            exp = 1 if lexemes[pos] == "*" else -1
            pos += 1
            node = ("mul", [(node, 1), (unary(), exp)])
        return node

    def unary() -> tuple:
        nonlocal pos
        if peek() == "-":
            pos += 1
            return ("add", [(unary(), -1)])
        if peek() == "+":
            pos += 1
            return unary()
        return power()

    def power() -> tuple:
        nonlocal pos
        base = atom()
        if peek() != "**":
            return base
        pos += 1
        exponent = unary()
        sign = 1
        while exponent[0] == "add" and len(exponent[1]) == 1:  # -k, --k
            sign *= exponent[1][0][1]
            exponent = exponent[1][0][0]
        if exponent[0] != "num" or exponent[1].denominator != 1:
            raise ValueError(f"non-integer power in {text!r}: only integer exponents are supported")
        k = sign * int(exponent[1])
        if k >= 0:
            return ("mul", [(base, k)])
        # SymPy's x**-k normalizes to Div(1, x**k): keep the same literal 1
        inner = base if k == -1 else ("mul", [(base, -k)])
        return ("mul", [(("num", Fraction(1)), 1), (inner, -1)])

    def atom() -> tuple:
        nonlocal pos
        tok = expect_operand()
        if tok == "(":
            node = expr()
            if expect_operand() != ")":
                raise ValueError(f"unbalanced parentheses in {text!r}")
            return node
        if tok[0].isdigit() or tok[0] == ".":
            return ("num", _literal(tok))
        raise ValueError(f"unexpected {tok!r} in {text!r}")

    tree = expr()
    if pos != n:
        raise ValueError(f"unexpected {lexemes[pos]!r} in {text!r}")
    return tree
