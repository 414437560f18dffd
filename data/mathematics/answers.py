"""Answers of the Mathematics Dataset's arithmetic modules, written exactly as the
dataset writes them, and read back.

The package (mathematics_dataset 1.0.1) writes an answer with str() of its value's type:
- add_or_sub and mul draw their numbers as `display.Decimal` (util/display.py), integers
  too, so their answers are Decimals: the quotient `decimal.Decimal(numerator) /
  decimal.Decimal(denominator)` in the default decimal context (28 significant digits,
  half even) printed in plain positional notation (`0.0000522`, `-209957.4`,
  `30828541939819661.6`; an integer value prints as an integer);
- div, mul_div_multiple, mixed and the add_sub_multiple modules compute with SymPy
  integers and rationals: str(Rational) is the integer or the reduced `p/q`, its sign on
  p (`-14000219/2`, `-1/79`).
A Decimal module's integer-valued answer prints as the integer a Rational would, so the
form follows from the question's own literals: a decimal answer when a literal has a
decimal point (only add_or_sub and mul draw such numbers), else the Rational one.
"""
import decimal
import re
from collections.abc import Iterable
from fractions import Fraction

DECIMAL_PRECISION = 28  # the default decimal context's, in which display.Decimal divides
_ANSWER = re.compile(r"(-?[0-9]+)(?:\.([0-9]+)|/([0-9]+))?")


def _decimal_text(value: Fraction) -> str:
    """display.Decimal's str() of a terminating decimal value."""
    d = decimal.Context(prec=DECIMAL_PRECISION).divide(decimal.Decimal(value.numerator),
                                                       decimal.Decimal(value.denominator))
    sign, digits, exponent = d.as_tuple()
    left = len(digits) + exponent  # digits before the point
    # as display.Decimal: a positive exponent (a value rounded to 28 digits) loses its zeros
    whole = "".join(map(str, digits[:left])) if left > 0 else "0"
    fraction = "." + "0" * max(0, -left) + "".join(map(str, digits[exponent:])) if exponent < 0 else ""
    return ("-" if sign else "") + whole + fraction


def format_benchmark_answer(value: Fraction | int, literals: Iterable[str]) -> str:
    """The dataset's answer text for an exact value, given the texts of the question's
    literals (see the module docstring); ValueError for a decimal question whose value
    has no terminating decimal (no + - * of decimals gives one)."""
    value = Fraction(value)
    if not any("." in text for text in literals):
        return str(value)  # Fraction prints as SymPy's Rational does: 5, -1/79
    denominator = value.denominator
    for p in (2, 5):
        while denominator % p == 0:
            denominator //= p
    if denominator != 1:
        raise ValueError(f"the value {value} of a question with decimal literals has no terminating decimal, "
                         f"so the dataset's decimal answer format cannot write it")
    return _decimal_text(value)


def read_benchmark_answer(text: str) -> Fraction:
    """The exact value of an answer text in the dataset's format (an integer, a decimal or
    a fraction p/q); ValueError naming the text for anything else."""
    m = _ANSWER.fullmatch(text)
    if m is None:
        raise ValueError(f"answer {text!r} is not an integer, a decimal or a fraction p/q "
                         f"as the dataset writes answers")
    whole, places, denominator = m.groups()
    if denominator is not None:
        if int(denominator) == 0:
            raise ValueError(f"answer {text!r} divides by zero")
        return Fraction(int(whole), int(denominator))
    return Fraction(text) if places is not None else Fraction(int(whole))
