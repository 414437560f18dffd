"""The full model's text stream (data/dagset/text_stream.py) and its canonical answer
format and result channel (models/result_copy.py)."""
import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from data.dagset import text_stream
from data.dagset.streaming import StreamConfig, draw_example, split_of
from data.dagset.text_format import PAD_TOKEN, PART_CHARS, encode, format_answer, gpt2_encoding
from data.dagset.text_stream import (TEMPLATES, TextConfig, TextExampleMaker, make_text_batch, question, read_corpus,
                                     row_literals)
from models.result_copy import ResultCopy, ResultTokens, answer_tokens, mixed_log_probs, mixed_nll

ENC = gpt2_encoding()


@pytest.mark.parametrize("value, text", [
    (Fraction(47), "47"), (Fraction(-1, 4), "-0.25"), (Fraction(1, 3), "0.333333"), (Fraction(2, 3), "0.666667"),
    (Fraction(25, 2), "12.5"), (Fraction(5, 10 ** 7), "0"), (Fraction(15, 10 ** 7), "0.000002"),  # ties: to even
    (Fraction(25, 10 ** 7), "0.000002"), (Fraction(-1, 10 ** 8), "0"), (Fraction(10 ** 16), "10000000000000000"),
    (Fraction(60271047013486908, 10 ** 6), "60271047013.4869"), (60271047013.48691, "60271047013.4869"),
    (Fraction(9996000599960001), "9996000599960000"), (Fraction(-123456789012345678), "-123456789012346000"),
    (Fraction(999999999999999999, 10 ** 3), "1000000000000000"), (Fraction(1, 3 * 10 ** 6), "0"),
    (0.1 + 0.2, "0.3"), (2.675, "2.675"), (1e16, "10000000000000000"), (-0.0, "0"), (12, "12"),
])
def test_format_answer(value, text):
    assert format_answer(value) == text


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_format_answer_refuses_non_finite(value):
    with pytest.raises(ValueError, match="non-finite"):
        format_answer(value)


def test_answer_tokens_are_the_answer_as_written_after_a_colon():
    assert answer_tokens(-764.83) == tuple(ENC.encode_ordinary(" -764.83"))
    assert ENC.encode_ordinary("Answer: -764.83") == ENC.encode_ordinary("Answer:") + list(answer_tokens(-764.83))
    assert answer_tokens(math.nan) == () and answer_tokens(1e40) == ()


def maker(**kw) -> TextExampleMaker:
    return TextExampleMaker(TextConfig(StreamConfig(block_size=64, depth_power=2.0, **kw)))


def test_rows_are_whole_text_encodings_with_the_expressions_dag_where_it_is_read():
    rows = maker(p_no_spaces=0.3, p_space_in_parens=0.3, p_neg_group=0.3, p_redundant_parens=0.3)
    templates = set()
    for i in range(120):
        row = rows.row("train", i)
        n = int((row["targets"] >= 0).sum())
        tokens = row["idx"][:n].tolist()
        text = ENC.decode(tokens)
        assert ENC.encode_ordinary(text) == tokens
        assert row["targets"][:n].tolist() == tokens[1:] + [PAD_TOKEN] and (row["idx"][n:] == PAD_TOKEN).all()
        expression = draw_example(rows.maker, "train", i).text  # row i asks expression i
        assert split_of(expression) == "train"
        templates.update(t for t in TEMPLATES if t.format(e=expression, a=text.rsplit(" ", 1)[1]) == text)
        value = rows.maker.targets(expression, rows.maker.tokens(expression))  # the expression alone
        last = int(np.flatnonzero(row["mask"] & (np.arange(64) < n))[-1])
        assert last == n - 1  # the whole DAG is kept to the end of the answer
        whole = value["mask"].nonzero()[0][-1]
        assert text.endswith(" " + format_answer(value["value"][whole]))
        for key in ("V_mag", "V_sign", "O", "G", "value"):
            assert np.array_equal(row[key][n - 1], value[key][whole]), key
        # the copy targets point at the row's own literal ends, with the literals' values
        src = row["V_src"][n - 1]
        for slot, s in enumerate(src[src >= 0]):
            assert row["lit_end"][s] and row["lit_value"][s] == row["V_mag"][n - 1, slot]
    assert templates == set(TEMPLATES)


def test_validation_rows_are_validation_expressions_and_rows_are_deterministic():
    rows = maker()
    for i in range(20):
        text = ENC.decode(rows.row("val", i)["idx"][(rows.row("val", i)["targets"] >= 0)].tolist())
        expression = draw_example(rows.maker, "val", i).text
        assert split_of(expression) == "val" and expression in text
    a, b = make_text_batch(rows, "train", 3, 4), make_text_batch(maker(), "train", 3, 4)
    assert all(torch.equal(a.tensors()[k], b.tensors()[k]) for k in a.tensors())


def test_question_is_the_first_template_up_to_its_answer():
    assert question("2 * (3 + 4)") == "What is 2 * (3 + 4) equal to?\nAnswer:"


def test_row_literals_read_every_number_of_free_text():
    tokens = ENC.encode_ordinary("I had 12 apples and 2.50 pears, then .5 more")
    lit = row_literals([ENC.decode_single_token_bytes(t) for t in tokens], 16)
    ends = np.flatnonzero(lit["lit_end"])
    assert [ENC.decode(tokens[:e + 1]).split()[-1].rstrip(",") for e in ends] == ["12", "2.50", ".5"]
    assert lit["lit_value"][ends].tolist() == [12.0, 2.5, 0.5]
    assert lit["lit_index"][:len(tokens)].max() == 4 and (lit["lit_index"][len(tokens):] == 0).all()
    # a number longer than MAX_LITERAL_CHARS is no literal (float() of it overflows)
    tokens = ENC.encode_ordinary("1" + "0" * 400 + " and 7")
    lit = row_literals([ENC.decode_single_token_bytes(t) for t in tokens], len(tokens))
    assert lit["lit_value"][lit["lit_end"]].tolist() == [7.0]


def test_long_texts_encode_in_parts_as_one():
    text = "".join(f"Line {i}: 12.5 * {i} =  {12.5 * i}\n\n\tx's" for i in range(6000))
    assert len(text) > 2 * PART_CHARS and encode(text) == ENC.encode_ordinary(text)
    # tiktoken's regex panics on a million spaces in a row; in parts they encode
    assert len(encode("1" + " " * 10 ** 6 + "+ 1")) == 10 ** 6 + 2


def test_rows_pass_over_expressions_that_fit_no_template():
    """block_size=24: most depth-3 texts fit, some do not; no row fails."""
    rows = TextExampleMaker(TextConfig(StreamConfig(block_size=24, max_expr_depth=3)))
    drawn = [draw_example(rows.maker, "train", i) for i in range(200)]
    assert not all(rows.fits(example) for example in drawn)
    for i in range(200):
        row = rows.row("train", i)
        assert (row["targets"] >= 0).sum() <= 24
        assert row["mask"].any()


def test_corpus_rows_mix_in_without_dag_targets(tmp_path):
    corpus = np.array(ENC.encode_ordinary("The cat sat on 3 mats. " * 60), dtype=np.uint16)
    for split in ("train", "val"):
        corpus.tofile(tmp_path / f"{split}.bin")
    rows = TextExampleMaker(TextConfig(StreamConfig(block_size=64), str(tmp_path), 0.5))
    kinds = [rows.row("train", i)["mask"].any() for i in range(40)]
    assert 8 < sum(kinds) < 32  # about half are expression rows
    row = next(rows.row("train", i) for i in range(40) if not kinds[i])
    assert np.array_equal(row["targets"][:-1], row["idx"][1:])
    assert ENC.decode(row["idx"].tolist()) in ENC.decode(corpus.tolist())


def test_bad_corpus_files_are_value_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(text_stream, "CORPUS_CHUNK", 8)  # every chunk is checked, not only the first
    text = "The cat sat on 3 mats.\n" * 10
    tokens = np.array(ENC.encode_ordinary(text), dtype=np.uint16)
    files = {"odd": b"abc", "short": tokens[:8], "past the vocabulary": np.append(tokens, 60000).astype(np.uint16),
             "int32": tokens.astype(np.int32), "text": text.encode()}
    for name, data in files.items():
        (tmp_path / f"{name}.bin").write_bytes(bytes(data))
    for name, message in [("missing", "does not exist"), ("odd", "is not uint16 tokens: 3 bytes"),
                          ("short", "has 8 tokens, fewer than the 9 of one row (block_size + 1)"),
                          ("past the vocabulary", "holds token 60000, past GPT-2's vocabulary of 50257"),
                          ("int32", f"is {len(tokens)} of {2 * len(tokens)} token 0: int32 or int64 tokens"),
                          ("text", "is UTF-8 text, not tokens")]:
        with pytest.raises(ValueError, match=re.escape(f"corpus file {str(tmp_path / name) + '.bin'!r} {message}")):
            read_corpus(str(tmp_path / f"{name}.bin"), 9)
    tokens.tofile(tmp_path / "good.bin")
    assert np.array_equal(read_corpus(str(tmp_path / "good.bin"), 9), tokens)
    with pytest.raises(ValueError, match="corpus_dir"):
        TextConfig(corpus_ratio=0.5)


def test_result_tokens_know_how_much_of_the_value_the_text_has_written():
    prompt = ENC.encode_ordinary("What is 1000 * 1234.5 equal to?\nAnswer:")
    result = list(answer_tokens(1234500.0))
    assert len(result) >= 2
    idx = torch.tensor([prompt + result])  # (1, T)
    T = idx.shape[1]
    values = torch.full((1, T), 1234500.0, dtype=torch.float64)
    r = ResultTokens.of(values, torch.ones(1, T, dtype=torch.bool), idx)
    assert r.tokens[0, 0, :len(result)].tolist() == result and (r.length == len(result)).all()
    n = len(prompt)
    assert r.written[0, n - 1] == 0 and r.written[0, n:].tolist() == list(range(1, len(result) + 1))
    none = ResultTokens.of(values, torch.zeros(1, T, dtype=torch.bool), idx)
    assert (none.length == 0).all() and (none.written == 0).all()


def test_mixture_loss_is_the_mixtures_log_probability():
    torch.manual_seed(0)
    N, K, V, C = 6, 4, 50, 8
    wte = torch.nn.Embedding(V, C)
    copy = ResultCopy(C)
    tokens = torch.randint(0, V, (N, K))
    length = torch.tensor([0, 1, 2, 4, 4, 3])
    result = ResultTokens(tokens, length, torch.tensor([0, 0, 1, 2, 4, 0]))
    x, lm_logits = torch.randn(N, C), torch.randn(N, V)
    targets = torch.where(torch.arange(N) % 2 == 0, tokens[:, 0], torch.randint(0, V, (N,)))
    log_gate, log_pointer = copy(x, wte, result)
    assert (log_gate[length == 0] == 0).all()  # no value: the plain language model
    full = mixed_log_probs(lm_logits, log_gate, log_pointer, tokens)
    assert torch.allclose(full.exp().sum(-1), torch.ones(N))
    expected = -full.gather(1, targets[:, None]).mean()
    assert torch.allclose(mixed_nll(lm_logits, log_gate, log_pointer, tokens, targets), expected, atol=1e-5)
    # where there is no value the loss is the language model's own
    plain = torch.nn.functional.cross_entropy(lm_logits[:1], targets[:1])
    assert torch.allclose(mixed_nll(lm_logits[:1], log_gate[:1], log_pointer[:1], tokens[:1], targets[:1]), plain)


def test_a_closed_gate_copies_the_next_result_token():
    torch.manual_seed(0)
    C, V = 8, 50
    copy, wte = ResultCopy(C), torch.nn.Embedding(V, C)
    with torch.no_grad():
        copy.gate.bias.fill_(-50.0)  # always copy
        copy.is_next.weight.zero_()
        copy.query.weight.zero_()
        copy.query.bias.fill_(1.0)
        copy.is_next.weight[1].fill_(100.0)  # the pointer goes to the next token to write
    tokens = torch.tensor([[7, 8, 9, 0]]).repeat(3, 1)
    result = ResultTokens(tokens, torch.tensor([3, 3, 3]), torch.tensor([0, 1, 2]))
    log_gate, log_pointer = copy(torch.zeros(3, C), wte, result)
    picks = mixed_log_probs(torch.randn(3, V), log_gate, log_pointer, tokens).argmax(-1)
    assert picks.tolist() == [7, 8, 9]


def test_an_answer_started_from_one_value_is_finished_from_it():
    prompt = ENC.encode_ordinary("What is 1000 * 1234.5 equal to?\nAnswer:")
    result = list(answer_tokens(1234500.0))
    idx = torch.tensor([prompt + result])
    T, n = idx.shape[1], len(prompt)
    values = torch.full((1, T), 1234500.0, dtype=torch.float64)
    values[0, n:] = 1234.0  # the DAG after the answer's first digits reads them as a number
    r = ResultTokens.of(values, torch.ones(1, T, dtype=torch.bool), idx)
    assert all(r.tokens[0, t, :len(result)].tolist() == result for t in range(n - 1, T))
    assert r.written[0, n - 1:].tolist() == list(range(len(result) + 1))
