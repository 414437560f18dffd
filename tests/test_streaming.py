"""The streaming dataset: per-token targets equal the SymPy reference path, the prefix
rule, determinism across DataLoader workers, resuming, sharding and split separation."""
import itertools

import numpy as np
import pytest
import sympy
import torch
from torch.utils.data import DataLoader

from data.dagset.conversion import exact_value, expression_to_tensors
from data.dagset.dag_plan import build_plan, plan_arrays
from data.dagset.fast_parse import parse_text
from data.dagset.generate_expression import generate_expression
from data.dagset.streaming import (DAGStream, ExampleMaker, StreamConfig, draw_example, make_batch,
                                   prefix_target_text, split_of)

CFG = StreamConfig(dag_depth=5, block_size=48, max_expr_depth=4, p_power=0.1)


def reference_targets(text: str, maker: ExampleMaker) -> dict[str, np.ndarray]:
    """Per-token targets built the slow way: SymPy parses every prefix's target text."""
    D, T = maker.cfg.dag_depth, maker.cfg.block_size
    tokens = maker.tokens(text)
    ref = {"V_mag": np.zeros((T, 2 * D)), "V_sign": np.ones((T, 2 * D)), "O": np.zeros((T, D, 2 * D)),
           "G": np.ones((T, D)), "value": np.zeros(T), "mask": np.zeros(T, dtype=bool)}
    end = 0
    for t, tok in enumerate(tokens):
        end += len(maker.enc.decode_single_token_bytes(tok))
        target = prefix_target_text(text, end)
        if target is None:
            continue
        expr = sympy.parse_expr(target, evaluate=False)
        try:
            tensors = expression_to_tensors(expr, D)
        except ValueError:
            continue
        for key, x in zip(("V_mag", "V_sign", "O", "G"), tensors):
            ref[key][t] = x[0, 0].numpy()
        ref["value"][t] = float(exact_value(expr))
        ref["mask"][t] = True
    return ref


def test_fast_path_equals_sympy_path_on_every_prefix():
    maker = ExampleMaker(CFG)
    n_prefixes = 0
    for i in range(1000):
        text, _, ex = draw_example(maker, "train", i)
        ref = reference_targets(text, maker)
        for key in ref:
            np.testing.assert_array_equal(ex[key], ref[key], err_msg=f"{key} differs for {text!r}")
        n_prefixes += int(ref["mask"].sum())
    assert n_prefixes > 4000


def test_fast_parser_equals_sympy_on_thousands_of_expressions():
    settings = itertools.cycle([dict(), dict(p_unary_minus=0.5), dict(p_parens=0.6), dict(p_power=0.3),
                                dict(max_digits=2, max_decimal_places=0), dict(ops="*/", p_unary_minus=0.4)])
    for seed, kwargs in zip(range(2000), settings):
        text = generate_expression(seed, seed % 8, **kwargs)
        fast = plan_arrays(build_plan(parse_text(text)), 12)
        ref = expression_to_tensors(sympy.parse_expr(text, evaluate=False), 12)
        for a, b in zip(fast, ref):
            np.testing.assert_array_equal(a, b[0, 0].numpy(), err_msg=text)
        assert fast[4] == exact_value(text)


@pytest.mark.parametrize("text, end, expected", [
    ("2.5 * 3", 5, "2.5"),           # "2.5 *": the dangling operator is dropped
    ("2.5 * 3", 7, "2.5 * 3"),
    ("9876.5 + 1", 2, None),         # "98" is inside a number
    ("(1 + 2) * (3 - 4)", 12, "(1 + 2) * (3)"),
    ("(1 + 2) * (3 - 4)", 1, None),  # "(" alone
    ("-3 + 4", 1, None),             # "-" alone
    ("2 - -3", 4, "2"),
    ("((1 + 2) * 3)", 8, "((1 + 2))"),
])
def test_prefix_rule(text, end, expected):
    assert prefix_target_text(text, end) == expected


def test_targets_positions_and_mask():
    cfg = StreamConfig(dag_depth=3, block_size=16, max_expr_depth=2)
    maker = ExampleMaker(cfg)
    text = "2.5 * 3 + 1"
    ex = maker.targets(text, maker.tokens(text))
    tokens = maker.tokens(text)
    assert [maker.enc.decode([t]) for t in tokens] == ["2", ".", "5", " *", " 3", " +", " 1"]
    assert ex["mask"].tolist() == [False, False, True, True, True, True, True] + [False] * 9
    assert ex["value"][:7].tolist() == [0, 0, 2.5, 2.5, 7.5, 7.5, 8.5]
    assert (ex["idx"][7:] == 50256).all()
    # the final token's target is the whole expression's tensors
    for key, x in zip(("V_mag", "V_sign", "O", "G"), expression_to_tensors(text, 3)):
        np.testing.assert_array_equal(ex[key][6], x[0, 0].numpy())


def test_prefix_that_divides_by_zero_is_masked():
    cfg = StreamConfig(dag_depth=3, block_size=16, max_expr_depth=2)
    maker = ExampleMaker(cfg)
    text = "6 / (0 + 3)"
    ex = maker.targets(text, maker.tokens(text))
    ends = np.cumsum([len(maker.enc.decode([t])) for t in maker.tokens(text)])
    at_zero = list(ends).index(text.index("0") + 1)
    assert not ex["mask"][at_zero] and ex["mask"][len(ends) - 1]
    assert ex["value"][len(ends) - 1] == 2.0


def test_division_by_zero_hidden_by_flattening_is_caught_on_the_fast_path():
    # a / (b / c) flattens to a * b^-1 * c: c = 0 must still be a division by zero
    for text in ("5 / (2 / (1 - 1))", "6 / (5 / 0)", "4 / (3 * (2 - 2))"):
        with pytest.raises(ValueError, match="division by zero"):
            plan_arrays(build_plan(parse_text(text)), 4)
        with pytest.raises(ValueError, match="division by zero"):
            expression_to_tensors(text, 4)


def test_whole_text_too_deep_raises():
    maker = ExampleMaker(StreamConfig(dag_depth=2, block_size=16, max_expr_depth=1))
    text = "1 + 2 + 3"
    with pytest.raises(ValueError, match="dag_depth >= 3"):
        maker.targets(text, maker.tokens(text))


def _batches(stream, n, workers):
    loader = DataLoader(stream, batch_size=None, num_workers=workers)
    return [b for b, _ in zip(loader, range(n))]


def _assert_same(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_stream_is_the_same_for_any_worker_count_and_resumes():
    cfg = StreamConfig(dag_depth=3, block_size=24, max_expr_depth=2, seed=7)
    serial = _batches(DAGStream(cfg, "train", 4), 6, 0)
    _assert_same(serial, _batches(DAGStream(cfg, "train", 4), 6, 2))
    _assert_same(serial[4:], _batches(DAGStream(cfg, "train", 4, start=4), 2, 0))
    # DDP shards interleave: shard r of 2 takes batches r, r + 2, ...
    _assert_same(serial[1::2], _batches(DAGStream(cfg, "train", 4, shard=1, n_shards=2), 3, 0))
    assert not torch.equal(serial[0]["idx"], serial[1]["idx"])
    other_seed = _batches(DAGStream(StreamConfig(dag_depth=3, block_size=24, max_expr_depth=2, seed=8), "train", 4), 1, 0)
    assert not torch.equal(serial[0]["idx"], other_seed[0]["idx"])


def test_batch_layout():
    cfg = StreamConfig(dag_depth=3, block_size=24, max_expr_depth=2)
    b = make_batch(ExampleMaker(cfg), "val", 0, 5)
    shapes = {k: tuple(v.shape) for k, v in b.items()}
    assert shapes == {"idx": (5, 24), "V_mag": (5, 24, 6), "V_sign": (5, 24, 6), "O": (5, 24, 3, 6),
                      "G": (5, 24, 3), "value": (5, 24), "mask": (5, 24), "depth": (5,)}
    assert b["V_mag"].dtype == torch.float64 and b["mask"].dtype == torch.bool
    assert b["mask"].any(-1).all()
    # each tensor contiguous, and one storage per dtype (one shared-memory segment each
    # when a DataLoader worker hands the batch over)
    assert all(v.is_contiguous() for v in b.values())
    storages = {v.dtype: set() for v in b.values()}
    for v in b.values():
        storages[v.dtype].add(v.untyped_storage().data_ptr())
    assert set(storages) == {torch.int64, torch.float64, torch.bool}
    assert all(len(ptrs) == 1 for ptrs in storages.values())
    # and the views do not overlap: every example's own values
    ex = draw_example(ExampleMaker(cfg), "val", 3)[2]
    assert all(torch.equal(b[k][3], torch.from_numpy(ex[k])) for k in ex)


def test_train_and_val_never_share_an_expression():
    cfg = StreamConfig(dag_depth=3, block_size=24, max_expr_depth=2, max_digits=1, max_decimal_places=0)
    maker = ExampleMaker(cfg)
    train = {draw_example(maker, "train", i)[0] for i in range(400)}
    val = {draw_example(maker, "val", i)[0] for i in range(400)}
    assert train and val and not train & val  # tiny digits: plenty of chances to collide
    assert all(split_of(t) == "train" for t in train) and all(split_of(t) == "val" for t in val)


def test_bad_stream_settings():
    with pytest.raises(ValueError, match="max_expr_depth"):
        StreamConfig(dag_depth=3, max_expr_depth=3)
    with pytest.raises(ValueError, match="split"):
        DAGStream(StreamConfig(), "test", 4)
    with pytest.raises(ValueError, match="shard"):
        DAGStream(StreamConfig(), "train", 4, shard=2, n_shards=2)
