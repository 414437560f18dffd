"""Fast path from expression text to the DAG tree of dag_plan.py, without SymPy.

The streaming dataset converts every token prefix of every expression, which SymPy
would make far too slow for the training loop. This module defines the language of
expression texts, for both paths:

- `lex` is the one lexer: it accepts decimal literals (`12`, `3.0`, `12.50`, `.5`, `5.`,
  ASCII digits only, at most MAX_LITERAL_CHARS characters), the operators `+ - * / **`,
  parentheses, spaces and tabs, and rejects everything else with a ValueError whose one
  line quotes the text and says in plain words what is wrong (floor division `//`,
  `0x10`/`0b101`/`0o17`, scientific notation `1e5`, non-ASCII digits, names such as `x`
  or `sin`, an empty text, more than MAX_NESTING levels of nesting, more than
  MAX_LEXEMES lexemes). conversion.py lexes text with it too, so the two paths accept
  the same characters and numbers by construction;
- `parse_lexemes` is a recursive-descent parser with Python's precedence (unary minus
  and plus bind looser than `**`, `-2**2` is `-(2**2)`, `2**-1` is allowed; `+ - * /`
  are left-associative). Exponents must be whole-number literals (optionally signed or
  parenthesized) between -MAX_EXPONENT and MAX_EXPONENT. Chains `a - b + c` and
  `a * b / c` become one n-ary node, so a long chain needs no deep recursion.

conversion.py's SymPy path parses the grammar independently (Python's own `ast` over
the same lexemes, then SymPy objects); tests/test_streaming.py checks that both paths
accept and reject the same texts and give identical tensors.
"""
import re
import unicodedata
from fractions import Fraction
from functools import lru_cache

MAX_LITERAL_CHARS = 1000  # longer numbers are far outside the node range [1e-100, 1e100] anyway
MAX_NESTING = 100  # parentheses + pending unary signs and `**` at any point of the text
MAX_LEXEMES = 1000  # numbers, operators and parentheses
MAX_EXPONENT = 1000

_LEXEME = re.compile(r"[ \t]*(?:([0-9]+\.?[0-9]*|\.[0-9]+)|(\*\*|//|[-+*/()]))")
_OPERATORS = frozenset(("+", "-", "*", "/", "**"))
_NUMBER_START = frozenset("0123456789.")
_BASE_PREFIX = re.compile(r"0[xXbBoO][0-9a-zA-Z_]*")
_SCIENTIFIC = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]*")
_WORD = re.compile(r"[^\W\d]\w*")


def quote(text: str) -> str:
    """The text as error messages quote it: repr, shortened when it is long."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text)} characters)"


def _bad_character(text: str, pos: int, number_before: str | None) -> str:
    """Plain-words reason why the text cannot be read at pos."""
    char = text[pos]
    if number_before is not None:
        start = pos - len(number_before)
        if number_before == "0" and _BASE_PREFIX.match(text, start):
            literal = _BASE_PREFIX.match(text, start).group()
            return f"{literal!r} is a hexadecimal, binary or octal literal: write numbers in decimal"
        sci = _SCIENTIFIC.match(text, start)
        if char in "eE" and sci:
            return f"{sci.group()!r} is scientific notation: write the number out in decimal digits"
    if char == "^":
        return "'^' is not an operator here: write powers with '**'"
    if char == "%":
        return "'%' (remainder) is not supported"
    if char.isdigit() or char.isnumeric():
        return (f"{char!r} ({unicodedata.name(char, 'U+%04X' % ord(char))}) is not an ASCII digit: "
                f"only the digits 0-9 are supported")
    word = _WORD.match(text, pos)
    if word:
        return f"{word.group()!r} is not a number: only decimal numbers, + - * / **, parentheses and spaces"
    return f"unexpected character {char!r}: only decimal numbers, + - * / **, parentheses and spaces"


def lex(text: str) -> list[tuple[str, int]]:
    """The lexemes of a text (numbers, operators, parentheses), each with the offset
    just past it; ValueError, naming the text and the reason, for anything outside the
    language (see the module docstring)."""
    if not text.strip():
        raise ValueError(f"cannot parse {quote(text)}: the expression is empty")
    lexemes, pos = [], 0
    end = len(text.rstrip(" \t"))
    number_before = None
    while pos < end:
        m = _LEXEME.match(text, pos)
        if m is None:
            skip = pos + len(text[pos:end]) - len(text[pos:end].lstrip(" \t"))
            reason = _bad_character(text, skip, number_before if skip == pos else None)
            raise ValueError(f"cannot parse {quote(text)}: {reason}")
        number, operator = m.groups()
        if operator == "//":
            raise ValueError(f"cannot parse {quote(text)}: floor division '//' is not supported (use '/')")
        if number is not None and len(number) > MAX_LITERAL_CHARS:
            raise ValueError(f"cannot parse {quote(text)}: a number has more than {MAX_LITERAL_CHARS} characters")
        pos = m.end()
        if number is not None and pos < end and text[pos] == ".":
            run = re.match(r"[0-9.]+", text[pos - len(number):]).group()
            raise ValueError(f"cannot parse {quote(text)}: the number {run!r} has more than one decimal point")
        number_before = number
        lexemes.append((number or operator, pos))
    _check_nesting([w for w, _ in lexemes], text)
    if len(lexemes) > MAX_LEXEMES:
        raise ValueError(f"cannot parse {quote(text)}: the expression is too long "
                         f"(more than {MAX_LEXEMES} numbers, operators and parentheses)")
    return lexemes


def respace(text: str) -> str:
    """The text with the generator's tidy spacing and nothing else changed: one space
    around each binary `+ - * /`, none inside parentheses, around `**` or after a unary
    sign, so `3*4--(2/8)` and `( 3 + 4 )` read `3 * 4 - -(2 / 8)` and `(3 + 4)`. Its
    lexemes are the text's, in order (two numbers in a row keep a space between them, so
    a text outside the language stays outside). ValueError as `lex` for such a text."""
    words = [w for w, _ in lex(text)]
    out, prev = [], None
    for w in words:
        unary = w in ("+", "-") and (prev is None or prev == "(" or prev in _OPERATORS)
        if w in _OPERATORS and w != "**" and not unary:
            out.append(f" {w} ")
        elif prev is not None and prev[0] in _NUMBER_START and w[0] in _NUMBER_START:
            out.append(" " + w)
        else:
            out.append(w)
        prev = w
    return "".join(out)


def _check_nesting(words: list[str], text: str) -> None:
    """ValueError when the text nests deeper than MAX_NESTING: the nesting at a point is
    the number of open parentheses plus the unary signs and `**` whose operand is still
    being read (`-(-(1))` reaches 4, `-2**-3` reaches 3). It bounds the recursion depth
    of both parsers and of everything that walks their trees."""
    pending = [0]  # per open parenthesis (and the top level): signs and ** awaiting their operand
    level, prev, n = 0, None, len(words)
    for i, w in enumerate(words):
        if w == "(":
            pending.append(0)
            level += 1
        elif w == ")" or w[0] in _NUMBER_START:
            if w == ")" and len(pending) > 1:  # an unbalanced ")" is the parser's to report
                level -= 1 + pending.pop()
            if i + 1 == n or words[i + 1] != "**":  # the operand is complete
                level -= pending[-1]
                pending[-1] = 0
        elif w == "**" or prev is None or prev == "(" or prev in _OPERATORS:  # ** or a unary sign
            pending[-1] += 1
            level += 1
        if level > MAX_NESTING:
            raise ValueError(f"cannot parse {quote(text)}: the expression is nested too deeply "
                             f"(more than {MAX_NESTING} levels of parentheses, signs and powers)")
        prev = w


@lru_cache(maxsize=65536)
def _literal(text: str) -> Fraction:
    # every literal is parsed again in each later prefix of its expression
    return Fraction(text)


def parse_text(text: str) -> tuple:
    """DAG tree of an arithmetic text; ValueError for anything outside the language."""
    return parse_lexemes([lexeme for lexeme, _ in lex(text)], text)


def parse_lexemes(lexemes: list[str], text: str) -> tuple:
    """DAG tree of a lexeme list from `lex` (text is only quoted in error messages)."""
    n = len(lexemes)
    pos = 0

    def peek() -> str | None:
        return lexemes[pos] if pos < n else None

    def expect_operand() -> str:
        nonlocal pos
        if pos >= n:
            raise ValueError(f"incomplete expression {quote(text)}")
        pos += 1
        return lexemes[pos - 1]

    def chain(operand, ops: tuple[str, str], kind: str) -> tuple:
        """operand (op operand)*: one operand's node, or (kind, [(node, 1 for ops[0] else -1), ...])."""
        nonlocal pos
        node = operand()
        if peek() not in ops:
            return node
        items = [(node, 1)]
        while peek() in ops:
            sign = 1 if lexemes[pos] == ops[0] else -1
            pos += 1
            items.append((operand(), sign))
        return (kind, items)

    def expr() -> tuple:
        return chain(term, ("+", "-"), "add")

    def term() -> tuple:
        return chain(unary, ("*", "/"), "mul")

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
        last = pos - 1
        while lexemes[last] == ")":
            last -= 1
        if exponent[0] != "num" or "." in lexemes[last]:
            raise ValueError(f"non-integer power in {quote(text)}: only whole-number exponents such as 2 or -3 "
                             f"are supported")
        k = sign * int(exponent[1])
        if abs(k) > MAX_EXPONENT:
            raise ValueError(f"exponent {k} in {quote(text)} is too large: exponents must be whole numbers "
                             f"from {-MAX_EXPONENT} to {MAX_EXPONENT}")
        if k >= 0:
            return ("mul", [(base, k)])
        # SymPy's x**-k normalizes to Div(1, x**k): keep the same literal 1
        inner = base if k == -1 else ("mul", [(base, -k)])
        return ("mul", [(("num", Fraction(1)), 1), (inner, -1)])

    def atom() -> tuple:
        tok = expect_operand()
        if tok == "(":
            node = expr()
            if expect_operand() != ")":
                raise ValueError(f"unbalanced parentheses in {quote(text)}")
            return node
        if tok[0] in _NUMBER_START:
            return ("num", _literal(tok))
        raise ValueError(f"unexpected {tok!r} in {quote(text)}")

    tree = expr()
    if pos != n:
        raise ValueError(f"unexpected {lexemes[pos]!r} in {quote(text)}")
    return tree
