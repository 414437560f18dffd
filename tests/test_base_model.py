"""Tests for the shared transformer backbone and the GPT-2 weight loader in models/base_model.py."""

from types import SimpleNamespace

import pytest
import torch

from models.base_model import Backbone, configure_optimizers, gpt2_config_args, load_gpt2_weights


def tiny_config(**overrides) -> SimpleNamespace:
    args = dict(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=True)
    args.update(overrides)
    return SimpleNamespace(**args)


@pytest.fixture
def backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone(tiny_config()).eval()


def test_forward_shape(backbone):
    idx = torch.randint(0, 50, (3, 10))
    assert backbone(idx).shape == (3, 10, 32)


def test_too_long_input_raises(backbone):
    with pytest.raises(ValueError, match="17"):
        backbone(torch.zeros(1, 17, dtype=torch.long))


def test_weight_tying(backbone):
    assert backbone.lm_head.weight is backbone.wte.weight


def test_causality(backbone):
    torch.manual_seed(1)
    idx = torch.randint(0, 50, (2, 12))
    t = 5
    changed = idx.clone()
    changed[:, t + 1] = (changed[:, t + 1] + 1) % 50
    with torch.no_grad():
        a, b = backbone(idx), backbone(changed)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    # guards against a vacuous pass: the change must be visible from t+1 on
    assert not torch.equal(a[:, t + 1 :], b[:, t + 1 :])


def test_crop_block_size(backbone):
    backbone.crop_block_size(8)
    assert backbone.wpe.weight.shape == (8, 32)
    assert backbone(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 32)
    with pytest.raises(ValueError):
        backbone(torch.zeros(1, 9, dtype=torch.long))


def test_configure_optimizers_groups(backbone):
    optimizer = backbone.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    decay, nodecay = optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and nodecay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in nodecay["params"])
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in backbone.parameters()}
    assert sum(id(p) == id(backbone.wte.weight) for p in decay["params"]) == 1


def test_configure_optimizers_on_parent_module(backbone):
    parent = torch.nn.Module()
    parent.backbone = backbone
    parent.head = torch.nn.Linear(32, 3)
    backbone.wpe.weight.requires_grad_(False)
    optimizer = configure_optimizers(parent, 0.1, 1e-3, (0.9, 0.95), "cpu")
    grouped = {id(p) for g in optimizer.param_groups for p in g["params"]}
    expected = {id(p) for p in parent.parameters() if p.requires_grad}
    assert grouped == expected
    assert id(parent.head.weight) in {id(p) for p in optimizer.param_groups[0]["params"]}


def test_gpt2_config_args_known_and_unknown():
    assert gpt2_config_args("gpt2-medium") == dict(
        n_layer=24, n_head=16, n_embd=1024, vocab_size=50257, block_size=1024, bias=True
    )
    with pytest.raises(ValueError, match="not-a-model"):
        gpt2_config_args("not-a-model")


def test_load_gpt2_weights_matches_hf(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    hf = transformers.GPT2LMHeadModel(hf_config)
    # HF's own init is so small that mixed-up or untransposed weights could slip under the tolerance
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.3)
    hf.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()

    args = gpt2_config_args(str(tmp_path))
    assert args == dict(n_layer=2, n_head=2, n_embd=32, vocab_size=100, block_size=64, bias=True)
    backbone = Backbone(SimpleNamespace(dropout=0.0, **args)).eval()
    load_gpt2_weights(backbone, str(tmp_path))

    idx = torch.randint(0, 100, (2, 20))
    with torch.no_grad():
        ours = backbone.lm_head(backbone(idx))  # (B, T, vocab_size)
        theirs = hf(idx).logits  # (B, T, vocab_size)
    assert (ours - theirs).abs().max().item() < 1e-5


def test_load_gpt2_weights_shape_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=32, vocab_size=100, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    transformers.GPT2LMHeadModel(hf_config).save_pretrained(tmp_path)
    backbone = Backbone(tiny_config(n_layer=1, vocab_size=100, block_size=32))
    with pytest.raises(ValueError, match="wpe.weight"):
        load_gpt2_weights(backbone, str(tmp_path))
