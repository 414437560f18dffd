"""Tests for models/dag_model.py and models/predictor_only_model.py: GPT with dag_depth=0
is a plain nanoGPT GPT; with DAG heads, predictions have the documented shapes, soft()
and hard() the documented values, and a hand-made prediction executes exactly."""
import pytest
import torch
import torch.nn.functional as F

from models.dag_model import GPT, DAGPrediction, GPTConfig
from models.predictor_only_model import PredictorOnlyModel

D, MAX_DIGITS, PLACES, C = 3, 4, 4, 3
N_DIGITS = MAX_DIGITS + PLACES


def tiny_config(**overrides) -> GPTConfig:
    args = dict(block_size=32, vocab_size=100, n_layer=1, n_head=2, n_embd=32, dropout=0.0, bias=False,
                dag_depth=D, max_digits=MAX_DIGITS, max_decimal_places=PLACES, max_coefficient=C)
    return GPTConfig(**(args | overrides))


@pytest.fixture
def idx() -> torch.Tensor:
    return torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(1))


def random_prediction(scale: float) -> DAGPrediction:
    g = torch.Generator().manual_seed(0)
    B, T = 2, 5
    return DAGPrediction(
        digit_logits=scale * torch.randn(B, T, D, N_DIGITS, 10, generator=g),
        sign_logits=scale * torch.randn(B, T, D, generator=g),
        coef_logits=scale * torch.randn(B, T, D, 2 * D, 2 * C + 1, generator=g),
        gate_logits=scale * torch.randn(B, T, D, generator=g),
        max_decimal_places=PLACES,
    )


# ----------------------------------------------------------------------------- dag_depth=0


def test_plain_gpt_forward_with_targets(idx):
    torch.manual_seed(0)
    model = GPT(tiny_config(dag_depth=0)).eval()
    targets = torch.randint(0, 100, idx.shape, generator=torch.Generator().manual_seed(2))
    targets[0, :3] = -1  # ignored positions
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 7, 100)
    assert torch.equal(loss, F.cross_entropy(logits.view(-1, 100), targets.view(-1), ignore_index=-1))


def test_plain_gpt_inference_returns_last_position_only(idx):
    torch.manual_seed(0)
    model = GPT(tiny_config(dag_depth=0)).eval()
    with torch.no_grad():
        last, loss = model(idx)
        full, _ = model(idx, torch.zeros_like(idx))
    assert loss is None
    assert last.shape == (2, 1, 100)
    torch.testing.assert_close(last, full[:, -1:], rtol=0, atol=1e-6)


def test_plain_gpt_has_no_dag_heads(idx):
    model = GPT(tiny_config(dag_depth=0))
    assert not hasattr(model, "dag_predictor")
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"transformer"}
    with pytest.raises(ValueError, match="dag_depth=0"):
        model.predict_dag(idx)


def test_predictor_only_model_needs_dag_heads():
    with pytest.raises(ValueError, match="dag_depth >= 1"):
        PredictorOnlyModel(tiny_config(dag_depth=0))


# ----------------------------------------------------------------------------- DAG heads


def test_prediction_shapes(idx):
    torch.manual_seed(0)
    model = PredictorOnlyModel(tiny_config()).eval()
    pred = model(idx)
    assert pred.digit_logits.shape == (2, 7, D, N_DIGITS, 10)
    assert pred.sign_logits.shape == (2, 7, D)
    assert pred.coef_logits.shape == (2, 7, D, 2 * D, 2 * C + 1)
    assert pred.gate_logits.shape == (2, 7, D)
    assert pred.max_decimal_places == PLACES
    assert torch.equal(pred.coef_logits, model.predict_dag(idx).coef_logits)
    for tensors in (pred.soft(), pred.hard()):
        assert [t.shape for t in tensors] == [(2, 7, 2 * D), (2, 7, 2 * D), (2, 7, D, 2 * D), (2, 7, D)]
        assert all(t.dtype == torch.float64 for t in tensors)
        assert model.execute(*tensors).shape == (2, 7)


def test_soft_values():
    V_mag, V_sign, O, G = random_prediction(scale=3.0).soft()
    assert (V_mag >= 0).all() and (V_mag[..., :D] > 0).all()
    assert (V_mag[..., :D] <= 10 ** MAX_DIGITS).all()
    assert (V_sign.abs() <= 1).all() and (V_sign[..., :D].abs() < 1).all()
    assert (O.abs() <= C).all() and ((G > 0) & (G < 1)).all()
    # slots of computed nodes are no inputs
    assert (V_mag[..., D:] == 0).all() and (V_sign[..., D:] == 1).all()


def test_hard_values():
    pred = random_prediction(scale=3.0)
    V_mag, V_sign, O, G = pred.hard()
    # magnitudes are the argmax digits as an integer over 10^places: the float64 nearest
    # to that decimal, so V_mag * 10^places is an integer up to rounding
    k = (pred.digit_logits.argmax(-1) * 10 ** torch.arange(N_DIGITS - 1, -1, -1)).sum(-1)
    assert torch.equal(V_mag[..., :D], k.double() / 10 ** PLACES)
    scaled = V_mag * 10 ** PLACES
    assert (scaled - scaled.round()).abs().max() < 1e-6
    assert set(V_sign[..., :D].unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(V_sign[..., :D] < 0, pred.sign_logits > 0)
    assert torch.equal(O, O.round()) and set(O.unique().tolist()) == set(range(-C, C + 1))
    assert set(G.unique().tolist()) == {0.0, 1.0}
    assert (V_mag[..., D:] == 0).all() and (V_sign[..., D:] == 1).all()


def crafted_prediction(sharpness: float) -> DAGPrediction:
    """Logits of the DAG of (1.5 + 2.25) * -4 - 1.5: inputs n0 = 1.5, n1 = 2.25, n2 = -4;
    n3 = n0 + n1 (linear), n4 = n3 * n2 (log domain), n5 = n4 - n0 (linear)."""
    digit = torch.zeros(1, 1, D, N_DIGITS, 10)
    for node, value in enumerate((1.5, 2.25, 4.0)):
        for place, d in enumerate(f"{round(value * 10 ** PLACES):0{N_DIGITS}d}"):
            digit[0, 0, node, place, int(d)] = sharpness
    coefs = [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [-1, 0, 0, 0, 1, 0]]
    coef = F.one_hot(torch.tensor(coefs) + C, 2 * C + 1).float()[None, None] * sharpness
    return DAGPrediction(
        digit_logits=digit,
        sign_logits=torch.tensor([[[-1.0, -1.0, 1.0]]]) * sharpness,  # > 0: negative
        coef_logits=coef,
        gate_logits=torch.tensor([[[1.0, -1.0, 1.0]]]) * sharpness,  # > 0: linear
        max_decimal_places=PLACES,
    )


def test_hard_prediction_of_a_known_dag_executes_exactly():
    model = PredictorOnlyModel(tiny_config())
    V_mag, V_sign, O, G = crafted_prediction(sharpness=1.0).hard()
    assert V_mag[0, 0].tolist() == [1.5, 2.25, 4.0, 0.0, 0.0, 0.0]
    assert V_sign[0, 0].tolist() == [1.0, 1.0, -1.0, 1.0, 1.0, 1.0]
    assert G[0, 0].tolist() == [1.0, 0.0, 1.0]
    assert model.execute(V_mag, V_sign, O, G).item() == -16.5


def test_sharp_soft_prediction_executes_like_hard():
    model = PredictorOnlyModel(tiny_config())
    # a logit margin of 60 leaves e^-60 of probability off the argmax
    assert model.execute(*crafted_prediction(sharpness=60.0).soft()).item() == pytest.approx(-16.5, rel=1e-12)


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
        ours, _ = model(idx, torch.zeros_like(idx))
        theirs = hf(idx).logits
        pred = model.predict_dag(idx)
    assert (ours - theirs).abs().max().item() < 1e-5
    assert pred.digit_logits.shape == (2, 7, 3, N_DIGITS, 10)
    assert model.execute(*pred.hard()).shape == (2, 7)


def test_from_pretrained_refuses_unknown_overrides(hf_dir):
    with pytest.raises(ValueError, match="n_layer"):
        GPT.from_pretrained(str(hf_dir[0]), {"n_layer": 2})
