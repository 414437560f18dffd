"""Tests for models/dag_heads.py, the losses of predictor_utils.py and the metrics of
models/dag_model.py: each component decodes its logits as documented (soft and hard), a
hand-made prediction executes exactly with either value head, perfect logits give ~0
loss, masked positions contribute nothing, and the final-token metrics name the part
that fails."""
import pytest
import torch
import torch.nn.functional as F

from data.dagset.batch import Batch
from data.dagset.streaming import ExampleMaker, StreamConfig, make_batch
from models.dag_heads import Literals, PairLayer, Positions, digit_targets, literal_states
from models.dag_model import DAGPrediction, GPTConfig, final_token_metrics
from models.predictor_only_model import PredictorOnlyModel
from predictor_utils import dag_losses, loss_weights_of
from run.answer_eval import wilson_interval

D, MAX_DIGITS, PLACES, C = 3, 4, 4, 3
N_DIGITS = MAX_DIGITS + PLACES
BIG = 60.0  # a logit margin of 60 leaves e^-60 of probability off the argmax


def tiny_model(value_head: str) -> PredictorOnlyModel:
    torch.manual_seed(0)
    return PredictorOnlyModel(GPTConfig(block_size=8, vocab_size=100, n_layer=1, n_head=2, n_embd=32,
                                        bias=False, dag_depth=D, value_head=value_head, max_digits=MAX_DIGITS,
                                        max_decimal_places=PLACES, max_coefficient=C))


# The DAG of "1.5 + 2.25 * -4 ..." style text "(1.5 + 2.25) * -4 - 1.5", read as 4 tokens
# whose literals end at tokens 0, 1 and 2: n0 = 1.5, n1 = 2.25, n2 = -4;
# n3 = n0 + n1 (linear), n4 = n3 * n2 (log), n5 = n4 - n0 (linear) = -16.5.
VALUES, SIGNS = (1.5, 2.25, 4.0), (1.0, 1.0, -1.0)
COEFS = [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [-1, 0, 0, 0, 1, 0]]
GATES = (1.0, 0.0, 1.0)
LITERALS = Literals(index=torch.tensor([[1, 2, 3, 0]]), value=torch.tensor([[1.5, 2.25, 4.0, 0.0]], dtype=torch.float64),
                    end=torch.tensor([[True, True, True, False]]))


def target_batch() -> Batch:
    """A batch (B=1, T=4) whose last position holds the DAG above; earlier positions are masked."""
    T = 4
    V_mag = torch.zeros(1, T, 2 * D, dtype=torch.float64)
    V_mag[0, -1, :D] = torch.tensor(VALUES, dtype=torch.float64)
    V_sign = torch.ones(1, T, 2 * D, dtype=torch.float64)
    V_sign[0, -1, :D] = torch.tensor(SIGNS, dtype=torch.float64)
    O = torch.zeros(1, T, D, 2 * D, dtype=torch.float64)
    O[0, -1] = torch.tensor(COEFS, dtype=torch.float64)
    G = torch.ones(1, T, D, dtype=torch.float64)
    G[0, -1] = torch.tensor(GATES, dtype=torch.float64)
    V_src = torch.full((1, T, D), -1)
    V_src[0, -1] = torch.tensor([0, 1, 2])
    return Batch(idx=torch.zeros(1, T, dtype=torch.int64), V_mag=V_mag, V_sign=V_sign, O=O, G=G, V_src=V_src,
                 value=torch.tensor([[0.0, 0.0, 0.0, -16.5]], dtype=torch.float64),
                 mask=torch.tensor([[False, False, False, True]]),
                 lit_index=LITERALS.index, lit_value=LITERALS.value, lit_end=LITERALS.end)


def crafted_prediction(model: PredictorOnlyModel, sharpness: float) -> DAGPrediction:
    """Logits (B=1, T=4) that describe the DAG above at every position."""
    T = 4
    if model.config.value_head == "digits":
        digits = torch.tensor([[int(d) for d in f"{round(v * 10 ** PLACES):0{N_DIGITS}d}"] for v in VALUES])
        mag = F.one_hot(digits, 10).float().expand(1, T, D, N_DIGITS, 10) * sharpness
    else:
        mag = torch.full((1, T, D, T + 1), float("-inf"))
        for t in range(T):
            for i in range(D):
                mag[0, t, i, : t + 1] = 0.0  # what CopyValues allows: earlier literal ends
                mag[0, t, i, T] = 0.0
                if i <= t:
                    mag[0, t, i, i] = sharpness
    coef = F.one_hot(torch.tensor(COEFS) + C, 2 * C + 1).float().expand(1, T, D, 2 * D, 2 * C + 1) * sharpness
    logits = {
        "mag": mag,
        "sign": torch.tensor([-1.0, -1.0, 1.0]).expand(1, T, D) * sharpness,  # > 0: negative
        "op": coef,
        "gate": torch.tensor([1.0, -1.0, 1.0]).expand(1, T, D) * sharpness,  # > 0: linear
    }
    return DAGPrediction(logits, dict(model.dag_predictor.parts.items()), LITERALS)


@pytest.mark.parametrize("value_head", ["digits", "copy"])
def test_hard_prediction_of_a_known_dag_executes_exactly(value_head):
    model = tiny_model(value_head)
    V_mag, V_sign, O, G = (t[:, -1:] for t in crafted_prediction(model, sharpness=1.0).hard())
    assert V_mag[0, 0].tolist() == [1.5, 2.25, 4.0, 0.0, 0.0, 0.0]
    assert V_sign[0, 0].tolist() == [1.0, 1.0, -1.0, 1.0, 1.0, 1.0]
    assert O[0, 0].tolist() == COEFS and G[0, 0].tolist() == list(GATES)
    assert model.execute(V_mag, V_sign, O, G).item() == -16.5


@pytest.mark.parametrize("value_head", ["digits", "copy"])
def test_sharp_soft_prediction_executes_like_hard(value_head):
    model = tiny_model(value_head)
    executed = model.execute(*crafted_prediction(model, sharpness=BIG).soft())
    assert executed[0, -1].item() == pytest.approx(-16.5, rel=1e-12)


def test_digit_soft_and_hard_values():
    model = tiny_model("digits")
    g = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(2, 5, D, N_DIGITS, 10, generator=g)
    part = model.dag_predictor.parts["mag"]
    soft = part.soft(logits, LITERALS)
    assert (soft > 0).all() and (soft <= 10 ** MAX_DIGITS).all()
    k = (logits.argmax(-1) * 10 ** torch.arange(N_DIGITS - 1, -1, -1)).sum(-1)
    assert torch.equal(part.hard(logits, LITERALS), k.double() / 10 ** PLACES)


def test_copy_head_points_only_at_earlier_literals():
    model = tiny_model("copy")
    h = torch.randn(1, 4, 4 * 32)
    every = Positions.where(torch.ones(1, 4, dtype=torch.bool))
    logits = model.dag_predictor.parts["mag"](h, LITERALS, every).view(1, 4, D, 5)  # (B, T, D, T+1)
    allowed = torch.isfinite(logits[0, :, 0])  # (T, T+1), the same for every slot
    assert allowed.tolist() == [[True, False, False, False, True], [True, True, False, False, True],
                                [True, True, True, False, True], [True, True, True, False, True]]
    # the values it can give are the text's literals and 0 (none)
    hard = model.dag_predictor.parts["mag"].hard(logits, LITERALS)
    assert set(hard.flatten().tolist()) <= {0.0, 1.5, 2.25, 4.0}


def test_copy_head_copies_literals_longer_than_any_digit_limit():
    model = tiny_model("copy")
    literals = Literals(torch.tensor([[1]]), torch.tensor([[123456789.123456]], dtype=torch.float64),
                        torch.tensor([[True]]))
    logits = torch.tensor([[[[BIG, 0.0]] * D]])  # (1, 1, D, 2): every slot points at token 0
    assert model.dag_predictor.parts["mag"].hard(logits, literals)[0, 0, 0].item() == 123456789.123456


@pytest.mark.parametrize("value_head", ["digits", "copy"])
def test_perfect_logits_give_zero_component_losses(value_head):
    model = tiny_model(value_head)
    pred = crafted_prediction(model, sharpness=BIG)
    batch = target_batch()
    losses = dag_losses(pred, batch, model.execute(*pred.soft()))
    assert set(losses) == {"mag", "sign", "op", "gate", "exec"}
    for name, loss in losses.items():
        assert loss.item() == pytest.approx(0.0, abs=1e-12), name


@pytest.mark.parametrize("value_head", ["digits", "copy"])
def test_masked_positions_contribute_nothing(value_head):
    model = tiny_model(value_head)
    batch = target_batch()
    g = torch.Generator().manual_seed(0)
    pred = crafted_prediction(model, sharpness=2.0)
    clean = dag_losses(pred, batch, model.execute(*pred.soft()))
    noisy = {k: v.clone() for k, v in pred.logits.items()}
    for v in noisy.values():  # garbage at the masked positions only
        v[:, :3] = torch.where(torch.isfinite(v[:, :3]), 5 * torch.randn(v[:, :3].shape, generator=g), v[:, :3])
    noisy_pred = DAGPrediction(noisy, pred.components, pred.literals)
    changed = dag_losses(noisy_pred, batch, model.execute(*noisy_pred.soft()))
    for name in clean:
        assert changed[name].item() == pytest.approx(clean[name].item(), rel=1e-12), name


def test_copy_value_not_in_the_text_is_not_trained_and_keeps_gradients_finite():
    model = tiny_model("copy")
    batch = target_batch()
    batch.V_src[0, -1, 1] = -2  # e.g. the 1 that x**-k puts before x
    logits = crafted_prediction(model, sharpness=BIG).logits["mag"].clone().requires_grad_()
    part = model.dag_predictor.parts["mag"]
    loss = part.loss(logits, batch)[0, -1]
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.isfinite(logits.grad).all()


def test_digit_targets_refuse_values_too_long():
    assert digit_targets(torch.tensor([12.5], dtype=torch.float64), 2, 1).tolist() == [[1, 2, 5]]
    with pytest.raises(ValueError, match="max_digits=2"):
        digit_targets(torch.tensor([123.0], dtype=torch.float64), 2, 1)


def test_loss_weights_name_the_missing_or_bad_key():
    good = {"mag_weight": 1.0, "sign_weight": 1, "op_weight": 1.0, "gate_weight": 1.0, "exec_weight": 0.1}
    assert loss_weights_of(good) == {"mag": 1.0, "sign": 1.0, "op": 1.0, "gate": 1.0, "exec": 0.1}
    with pytest.raises(ValueError, match="exec_weight must be a number >= 0, got None"):
        loss_weights_of({k: v for k, v in good.items() if k != "exec_weight"})
    with pytest.raises(ValueError, match="sign_weight must be a number >= 0, got -1"):
        loss_weights_of(good | {"sign_weight": -1})


@pytest.mark.parametrize("value_head", ["digits", "copy"])
def test_final_token_metrics_say_which_part_fails(value_head):
    model = tiny_model(value_head)
    batch = target_batch()
    pred = crafted_prediction(model, sharpness=BIG)
    m = final_token_metrics(pred, batch, model.execute(*pred.hard()))
    assert {k: v.item() for k, v in m.items()} == {
        "exact": 1.0, "close": 1.0, "structure": 1.0, "values": 1.0, "sign": 1.0, "op": 1.0, "gate": 1.0}
    wrong_gate = {k: v.clone() for k, v in pred.logits.items()}
    wrong_gate["gate"][..., 1] = BIG  # step 1 in the linear domain instead of the log one
    pred = DAGPrediction(wrong_gate, pred.components, pred.literals)
    m = final_token_metrics(pred, batch, model.execute(*pred.hard()))
    assert (m["exact"].item(), m["structure"].item(), m["values"].item()) == (0.0, 0.0, 1.0)
    assert m["gate"].item() == pytest.approx(2 / 3)


def test_wilson_interval():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27754, abs=1e-5)
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    assert wilson_interval(10, 10)[1] == 1.0


def test_literal_states_gather_each_literal_end_read_so_far():
    h = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3) + 1
    end = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1]]).bool()
    literals = Literals(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.float64), end)
    nodes = literal_states(h, literals, 2)  # the first two literals' end states, and who has read them
    assert nodes.states[..., 0].tolist() == [[1, 7], [28, 0]]  # ends at 0 and 2 (3 is a third); one literal
    assert torch.equal(nodes.states[0, 1], h[0, 2])
    assert nodes.read.tolist() == [[[True, False], [True, False]] + [[True, True]] * 3,
                                   [[False, False]] * 4 + [[True, False]]]


def test_pair_layer_equals_projecting_every_positions_node_states():
    torch.manual_seed(0)
    layer = PairLayer(6, 3, width=5)
    h = torch.randn(2, 5, 6)
    end = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 1]]).bool()
    literals = Literals(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.float64), end)
    nodes = literal_states(h, literals, 2)
    broadcast = nodes.states[:, None] * nodes.read[..., None]  # (B, T, n, H): each position's node states
    expected = layer.out(F.gelu(layer.here(h)[:, :, None] + layer.node(broadcast)))
    every = Positions.where(torch.ones(2, 5, dtype=torch.bool))
    torch.testing.assert_close(layer(h, literals, 2, every).view(2, 5, 2, 3), expected)


def test_losses_and_metrics_of_a_trimmed_batch_are_the_untrimmed_ones():
    torch.manual_seed(0)
    model = PredictorOnlyModel(GPTConfig(block_size=32, vocab_size=50304, n_layer=1, n_head=2, n_embd=32, bias=False,
                                         dag_depth=4, value_head="copy", literal_embedding=True,
                                         literal_states=True)).eval()
    batch = make_batch(ExampleMaker(StreamConfig(dag_depth=4, block_size=32, max_expr_depth=3)), "val", 0, 16)
    cut = batch.trim()
    assert cut.idx.shape[1] < 32
    with torch.no_grad():
        results = []
        for b in (batch, cut):
            pred = model(b.idx, Literals.from_batch(b))
            results.append((dag_losses(pred, b, model.execute(*pred.soft())),
                            final_token_metrics(pred, b, model.execute(*pred.hard()))))
    for name, loss in results[0][0].items():
        torch.testing.assert_close(results[1][0][name], loss, msg=name)
    for name, metric in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], metric, msg=name)


@pytest.mark.parametrize("value_head,step_states", [("digits", False), ("copy", False), ("copy", True)])
def test_heads_at_some_positions_predict_what_they_predict_at_all(value_head, step_states):
    torch.manual_seed(0)
    model = PredictorOnlyModel(GPTConfig(block_size=8, vocab_size=100, n_layer=1, n_head=2, n_embd=32, bias=False,
                                         dag_depth=D, value_head=value_head, literal_states=True,
                                         step_states=step_states)).eval()
    idx = torch.randint(0, 100, (2, 4), generator=torch.Generator().manual_seed(1))
    literals = Literals(*(torch.cat([t, t]) for t in LITERALS))
    at = torch.tensor([[False, True, False, True], [True, False, False, False]])
    with torch.no_grad():
        every, some = model(idx, literals).logits, model(idx, literals, at=at).logits
    for name in every:
        torch.testing.assert_close(some[name][at], every[name][at], msg=name)  # other matmul shapes: last bits differ
        assert (some[name][~at] == 0).all(), name  # no prediction there


@pytest.mark.parametrize("step_states", [False, True])
def test_literal_state_heads_are_causal(step_states):
    torch.manual_seed(0)
    model = PredictorOnlyModel(GPTConfig(block_size=8, vocab_size=100, n_layer=1, n_head=2, n_embd=32, bias=False,
                                         dag_depth=D, literal_states=True, step_states=step_states)).eval()
    idx = torch.randint(0, 100, (1, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(idx, LITERALS).logits
        changed = Literals(LITERALS.index, LITERALS.value, torch.tensor([[True, True, False, True]]))
        after = model(idx, changed).logits
    for name in ("sign", "op"):  # a literal ending at token 2 or 3 cannot change what tokens 0-1 say
        assert torch.equal(before[name][:, :2], after[name][:, :2])
        assert not torch.equal(before[name][:, 2:], after[name][:, 2:])


def test_step_states_read_only_positions_up_to_their_own():
    torch.manual_seed(0)
    model = PredictorOnlyModel(GPTConfig(block_size=8, vocab_size=100, n_layer=1, n_head=2, n_embd=32, bias=False,
                                         dag_depth=D, literal_states=True, step_states=True)).eval()
    steps = model.dag_predictor.parts["gate"].steps
    h = torch.randn(2, 6, 128)
    at = Positions.where(torch.ones(2, 6, dtype=torch.bool))
    changed = h.clone()
    changed[:, 4:] += 1.0  # later positions: the steps at 0-3 must not see them
    with torch.no_grad():
        before, after = steps(h, at).view(2, 6, D, -1), steps(changed, at).view(2, 6, D, -1)
        assert before.shape[-1] == steps.width
        assert torch.equal(before[:, :4], after[:, :4])
        assert not torch.allclose(before[:, 4:], after[:, 4:])
        # at the first position each step's attention has one choice: that position's value
        v = steps.value(h[:, 0])[:, None]  # (B, 1, width)
        here = steps.here(h[:, 0]).view(2, D, -1)  # step k's own projection
        torch.testing.assert_close(before[:, 0], F.gelu(here + v))
