"""Tests for what the data stream reads off a text's literals (data/dagset/streaming.py):
each token's literal index (causal), the value and end token of every literal, and the
copy head's targets V_src, on GPT-2's real tokenization."""
import numpy as np
import pytest

from data.dagset.streaming import ExampleMaker, Literal, StreamConfig, draw_example, value_sources
from fractions import Fraction


@pytest.fixture(scope="module")
def maker() -> ExampleMaker:
    return ExampleMaker(StreamConfig())


def targets(maker: ExampleMaker, text: str) -> tuple[list[str], dict]:
    tokens = maker.tokens(text)
    return [maker.enc.decode([t]) for t in tokens], {k: v[: len(tokens)] for k, v in maker.targets(text, tokens).items()}


def test_literal_features_follow_gpt2_splits(maker):
    pieces, ex = targets(maker, "-784.1508 - 18.4 / 2.9")
    assert pieces == ["-", "784", ".", "150", "8", " -", " 18", ".", "4", " /", " 2", ".", "9"]
    # operators share the index of the literal after them: " -" belongs with " 18.4"
    assert ex["lit_index"].tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert np.flatnonzero(ex["lit_end"]).tolist() == [4, 8, 12]
    assert ex["lit_value"][[4, 8, 12]].tolist() == [784.1508, 18.4, 2.9]
    assert (ex["lit_value"][~ex["lit_end"]] == 0).all()


def test_literal_index_is_causal(maker):
    # a token's index is the same whatever follows it: operators and a trailing ")" look
    # ahead to "the next literal", which is the count so far plus one
    _, whole = targets(maker, "(5 + 8006) - 510.1")
    _, prefix = targets(maker, "(5 + 8006)")
    assert whole["lit_index"].tolist()[:len(prefix["lit_index"])] == prefix["lit_index"].tolist() == [1, 1, 2, 2, 2, 3]


def test_copy_targets_point_at_each_value_literal(maker):
    _, ex = targets(maker, "-784.1508 - 18.4 / 2.9")
    assert ex["V_src"][12].tolist() == [4, 8, 12, -1]  # three values, one unused slot
    assert ex["V_src"][8].tolist() == [4, 8, -1, -1]  # the prefix "-784.1508 - 18.4"
    # every valid position's sources hold exactly its input values
    for t in np.flatnonzero(ex["mask"]):
        used = ex["V_src"][t] >= 0
        assert ex["lit_value"][ex["V_src"][t][used]].tolist() == ex["V_mag"][t, :4][used].tolist()
        assert (ex["V_mag"][t, :4][~used] == 0).all()


def test_copy_targets_with_human_forms(maker):
    pieces, ex = targets(maker, "(3.0 + 12.50) * -(2 - 7)")
    last = len(pieces) - 1
    assert ex["lit_value"][ex["V_src"][last]].tolist() == [3.0, 12.5, 2.0, 7.0]


def test_value_sources_pass_over_exponents_and_sign_factors():
    lits = [Literal(0, Fraction(3), 0), Literal(2, Fraction(2), 2), Literal(4, Fraction(5), 4)]  # "3**2*5"
    assert value_sources([(Fraction(3), 1), (Fraction(5), 1)], lits) == [0, 4]
    lits = [Literal(0, Fraction(1), 1), Literal(2, Fraction(3), 3)]  # "-1*3": the -1 is a sign
    assert value_sources([(Fraction(3), -1)], lits) == [3]
    # "2**-1 + 5": x**-k puts a 1 before x; a value the text lacks is -2
    lits = [Literal(0, Fraction(2), 0), Literal(3, Fraction(1), 3), Literal(5, Fraction(5), 5)]
    assert value_sources([(Fraction(1), 1), (Fraction(2), 1), (Fraction(5), 1)], lits) == [3, 0, 5]
    assert value_sources([(Fraction(7), 1)], lits) == [-2]


def test_generated_examples_have_consistent_copy_targets(maker):
    for i in range(200):
        ex = draw_example(maker, "train", i).targets
        for t in np.flatnonzero(ex["mask"]):
            used = ex["V_src"][t] >= 0
            assert (ex["V_src"][t] != -2).all()
            assert ex["lit_end"][ex["V_src"][t][used]].all()
            assert ex["lit_value"][ex["V_src"][t][used]].tolist() == ex["V_mag"][t, :4][used].tolist()


def test_long_literal_set_is_held_out_and_longer_than_trained():
    import os
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "data", "eval"))
    import make_long_literals
    from data.dagset.streaming import split_of
    with open(make_long_literals.PATH) as f:
        lines = f.read().splitlines()
    assert lines == make_long_literals.lines()  # the script makes exactly this file
    assert len(lines) == 200 and all(split_of(t) == "val" for t in lines)
    for text in lines:  # every line has a literal beyond 4 integer digits or 4 decimals
        words = [w for w in text.replace("(", " ").replace(")", " ").replace("-", " ").split() if w[0].isdigit()]
        assert any(len(w.split(".")[0]) > 4 or len(w.partition(".")[2]) > 4 for w in words), text
