"""Tests for models/dag_model.py and models/predictor_only_model.py: GPT with dag_depth=0
is a plain nanoGPT GPT; with DAG heads, predictions have the documented shapes for
either value head, the literal embedding is read causally, and GPT-2 weights load.
The components' decoding and losses are tested in tests/test_dag_heads.py."""
import pytest
import torch
import torch.nn.functional as F

from models.dag_heads import Literals
from data.dagset.streaming import StreamConfig
from data.dagset.text_stream import TextConfig, TextExampleMaker, make_text_batch
from models.dag_model import GPT, GPTConfig, Teacher
from models.predictor_only_model import PredictorOnlyModel
from predictor_utils import dag_losses

D, MAX_DIGITS, PLACES, C = 3, 4, 4, 3
N_DIGITS = MAX_DIGITS + PLACES


def tiny_config(**overrides) -> GPTConfig:
    args = dict(block_size=32, vocab_size=100, n_layer=1, n_head=2, n_embd=32, dropout=0.0, bias=False,
                dag_depth=D, max_digits=MAX_DIGITS, max_decimal_places=PLACES, max_coefficient=C)
    return GPTConfig(**(args | overrides))


@pytest.fixture
def idx() -> torch.Tensor:
    return torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- dag_depth=0


def test_plain_gpt_forward_with_targets(idx):
    torch.manual_seed(0)
    model = GPT(tiny_config(dag_depth=0)).eval()
    targets = torch.randint(0, 100, idx.shape, generator=torch.Generator().manual_seed(2))
    targets[0, :3] = -1  # ignored positions
    logits, loss, dag = model(idx, targets)
    valid = targets != -1
    assert logits.shape == (int(valid.sum()), 100) and dag is None  # only where a target is
    full = model.transformer.lm_head(model.transformer(idx))  # (2, 7, 100)
    torch.testing.assert_close(logits, full[valid])
    torch.testing.assert_close(loss, F.cross_entropy(full.view(-1, 100), targets.view(-1), ignore_index=-1))


def test_plain_gpt_inference_returns_last_position_only(idx):
    torch.manual_seed(0)
    model = GPT(tiny_config(dag_depth=0)).eval()
    with torch.no_grad():
        last, loss, _ = model(idx)
        full, _, _ = model(idx, torch.zeros_like(idx))
    assert loss is None
    assert last.shape == (2, 1, 100)
    torch.testing.assert_close(last, full.view(2, 7, 100)[:, -1:], rtol=0, atol=1e-6)


def test_plain_gpt_has_no_dag_heads(idx):
    model = GPT(tiny_config(dag_depth=0))
    assert not hasattr(model, "dag_predictor")
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"transformer"}
    with pytest.raises(ValueError, match="dag_depth=0"):
        model.predict_dag(idx, no_literals(idx))


def test_dag_gpt_reads_the_texts_literals(idx):
    with pytest.raises(ValueError, match="literals"):
        GPT(tiny_config())(idx, idx)


@pytest.mark.parametrize("step_states", [False, True])
def test_dag_gpt_is_a_language_model_with_a_result_channel(step_states):
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=50304, block_size=64, value_head="copy", literal_states=True,
                            step_states=step_states))
    rows = TextExampleMaker(TextConfig(StreamConfig(dag_depth=D, block_size=64, max_expr_depth=D - 1)))
    batch = make_text_batch(rows, "train", 0, 2)
    literals = Literals.from_batch(batch)
    logits, loss, dag = model(batch.idx, batch.targets, literals, Teacher(batch.value, batch.mask))
    assert logits.shape == (int((batch.targets >= 0).sum()), 50304) and torch.isfinite(loss)
    assert dag.logits["op"].shape == (2, 64, D, 2 * D, 2 * C + 1)
    (loss + sum(dag_losses(dag, batch, model.execute(*dag.soft())).values())).backward()
    assert all(p.grad is not None for p in model.result_copy.parameters())
    assert all(p.grad is not None for p in model.dag_predictor.parameters())  # none unused under DDP
    with torch.no_grad():
        last, none, _ = model(batch.idx[:, :10], literals=Literals(*(t[:, :10] for t in literals)))
    assert last.shape == (2, 1, 50304) and none is None
    torch.testing.assert_close(last.exp().sum(-1), torch.ones(2, 1))  # log-probabilities of the mixture


def test_predictor_only_model_needs_dag_heads():
    with pytest.raises(ValueError, match="dag_depth >= 1"):
        PredictorOnlyModel(tiny_config(dag_depth=0))


# ----------------------------------------------------------------------------- DAG heads


def no_literals(idx: torch.Tensor) -> Literals:
    B, T = idx.shape
    return Literals(torch.zeros(B, T, dtype=torch.long), torch.zeros(B, T, dtype=torch.float64),
                    torch.zeros(B, T, dtype=torch.bool))


@pytest.mark.parametrize("value_head", ["digits", "copy"])
def test_prediction_shapes(idx, value_head):
    torch.manual_seed(0)
    model = PredictorOnlyModel(tiny_config(value_head=value_head)).eval()
    pred = model(idx, no_literals(idx))
    value_shape = (2, 7, D, N_DIGITS, 10) if value_head == "digits" else (2, 7, D, 8)
    assert {k: tuple(v.shape) for k, v in pred.logits.items()} == {
        "mag": value_shape, "sign": (2, 7, D), "op": (2, 7, D, 2 * D, 2 * C + 1), "gate": (2, 7, D)}
    assert torch.equal(pred.logits["op"], model.predict_dag(idx, no_literals(idx)).logits["op"])
    for tensors in (pred.soft(), pred.hard()):
        assert [t.shape for t in tensors] == [(2, 7, 2 * D), (2, 7, 2 * D), (2, 7, D, 2 * D), (2, 7, D)]
        assert all(t.dtype == torch.float64 for t in tensors)
        assert model.execute(*tensors).shape == (2, 7)


def test_literal_embedding_reads_the_literal_index(idx):
    torch.manual_seed(0)
    model = PredictorOnlyModel(tiny_config(literal_embedding=True)).eval()
    literals = no_literals(idx)
    with torch.no_grad():
        before = model(idx, literals).logits["op"]
        literals.index[:, 3] = 2
        after = model(idx, literals).logits["op"]
    assert torch.equal(before[:, :3], after[:, :3])  # causal: earlier positions cannot see it
    assert not torch.equal(before[:, 3:], after[:, 3:])


def test_bad_value_head():
    with pytest.raises(ValueError, match="value_head must be one of"):
        tiny_config(value_head="regress")


# ----------------------------------------------------------------------------- GPT-2 weights


@pytest.fixture
def hf_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0))
    # HF's own init is so small that wrong weights could slip under the tolerance
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.3)
    hf.save_pretrained(tmp_path)
    return tmp_path, hf.eval()


def test_from_pretrained_local_gpt2_with_dag_heads(hf_dir, idx):
    path, hf = hf_dir
    model = GPT.from_pretrained(str(path), {"dag_depth": 3, "dropout": 0.0}).eval()
    assert (model.config.dag_depth, model.config.block_size, model.config.vocab_size, model.config.bias) == (3, 64, 100, True)
    with torch.no_grad():
        ours = model.transformer.lm_head(model.transformer(idx))
        theirs = hf(idx).logits
        pred = model.predict_dag(idx, no_literals(idx))
    assert (ours - theirs).abs().max().item() < 1e-5
    assert pred.logits["mag"].shape == (2, 7, 3, N_DIGITS, 10)
    assert model.execute(*pred.hard()).shape == (2, 7)


def test_from_pretrained_refuses_unknown_overrides(hf_dir):
    with pytest.raises(ValueError, match="n_layer"):
        GPT.from_pretrained(str(hf_dir[0]), {"n_layer": 2})
