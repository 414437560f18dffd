"""How the project's texts are written and read as tokens: GPT-2's encoding (opened
once per process), long texts encoded in parts, the padding token, and `format_answer`,
the one canonical number format: training texts are answered in it, the model's result
channel (models/result_copy.py) writes it and evaluate.py compares against it.
"""
import math
import re
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

import tiktoken

PAD_TOKEN = 50256  # GPT-2's <|endoftext|>: ends every text row; padded positions are masked anyway
GPT2_VOCAB = PAD_TOKEN + 1  # token ids 0 .. 50256; the model's 50304 rows pad it to a multiple of 64
ANSWER_PLACES = 6  # fractional digits of the canonical format
ANSWER_DIGITS = 15  # and significant digits


@lru_cache(maxsize=1)
def gpt2_encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("gpt2")


# tiktoken's pre-tokenizing regex overflows its stack (a Rust panic) on a whitespace run of
# some 10**6 characters, so a longer text is encoded in parts of at most PART_CHARS. A part
# ends before a single space or line break between two other characters: a pre-token
# boundary, so the parts' tokens are the whole text's. Only inside a longer run of
# whitespace is a part cut anywhere (its tokens there may differ from one encoding).
PART_CHARS = 1 << 16
_PART_END = re.compile(r"(?<=\S)[ \n](?=\S)")


def encode(text: str) -> list[int]:
    """GPT-2 tokens of a text of any length (encode_ordinary, in parts for a long one)."""
    enc, tokens, start = gpt2_encoding(), [], 0
    while len(text) - start > PART_CHARS:
        end = _PART_END.search(text, start + PART_CHARS // 2, start + PART_CHARS)
        end = end.start() if end else start + PART_CHARS
        tokens += enc.encode_ordinary(text[start:end])
        start = end
    return tokens + enc.encode_ordinary(text[start:])


def format_answer(value: Fraction | int | float) -> str:
    """A number's canonical text: rounded half to even to ANSWER_PLACES decimal places
    or ANSWER_DIGITS significant digits, whichever keeps fewer, so an exact decimal with
    at most 6 fractional digits and 15 digits in all is written exactly. Plain decimal:
    no trailing zeros, no trailing '.', no exponent, '0' rather than '-0'.

    15 digits is what the float64 executor carries (about 15.9), so the text of an
    executed value is the text of the exact one (but at the rare value whose next digit
    is a tie). A float is read as the shortest decimal that gives it back (repr), so the
    float64 of 0.1 + 0.2 is written '0.3'."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a non-finite value ({value}) has no answer text")
        value = Fraction(Decimal(repr(float(value))))  # float(): numpy floats repr as np.float64(...)
    value = Fraction(value)
    whole_digits = len(str(abs(value.numerator) // value.denominator)) if abs(value) >= 1 else 0
    places = min(ANSWER_PLACES, ANSWER_DIGITS - whole_digits)
    scaled = round(value * Fraction(10) ** places)  # Fraction rounds half to even
    if places <= 0:
        text = str(abs(scaled) * 10 ** -places)
    else:
        whole, fraction = divmod(abs(scaled), 10 ** places)
        text = str(whole) if fraction == 0 else f"{whole}.{fraction:0{places}d}".rstrip("0")
    return ("-" if scaled < 0 else "") + text
