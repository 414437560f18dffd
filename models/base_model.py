"""
The shared nanoGPT transformer backbone: token + position embeddings, a stack of
pre-LN transformer blocks and a final LayerNorm, with an lm_head tied to the
token embedding. Task-specific models wrap a Backbone and decide what to do
with its hidden states. Also holds the helpers that load OpenAI's GPT-2
weights (via Hugging Face transformers) into a Backbone.
"""

import inspect
import math
import os

import torch
import torch.nn as nn
from torch.nn import functional as F

# (n_layer, n_head, n_embd) of the four released GPT-2 checkpoints
GPT2_SIZES = {
    "gpt2": (12, 12, 768),  # 124M params
    "gpt2-medium": (24, 16, 1024),  # 350M params
    "gpt2-large": (36, 20, 1280),  # 774M params
    "gpt2-xl": (48, 25, 1600),  # 1558M params
}

# HF's GPT-2 stores these as Conv1D, i.e. (in, out) weights, while nn.Linear wants (out, in)
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's nn.LayerNorm can't turn the bias off)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query, value projections for all heads, in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # each (B, T, C)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # attention dropout happens inside the fused kernel, and only while training
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # GPT-2 was trained with the tanh approximation; using it makes pretrained weights exact
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gelu(self.c_fc(x))  # (B, T, 4C)
        return self.dropout(self.c_proj(x))  # (B, T, C)


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class Backbone(nn.Module):
    """GPT body: idx (B, T) -> hidden states (B, T, n_embd), plus a tied lm_head for callers."""

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying (https://paperswithcode.com/method/weight-tying)
        self.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # scaled init of the residual projections, per the GPT-2 paper
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, extra_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states of idx (B, T); extra_emb (B, T, C), if given, is added to the
        token and position embeddings (per-token features read off the text)."""
        b, t = idx.size()
        if t > self.config.block_size:
            raise ValueError(f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}")
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)  # (T,)
        tok_emb = self.wte(idx)  # (B, T, C)
        pos_emb = self.wpe(pos)  # (T, C)
        x = tok_emb + pos_emb if extra_emb is None else tok_emb + pos_emb + extra_emb
        x = self.drop(x)  # (B, T, C)
        for block in self.h:
            x = block(x)
        return self.ln_f(x)  # (B, T, C)

    def crop_block_size(self, block_size: int) -> None:
        """Shrink the context length, e.g. to fine-tune GPT-2 (1024) at a smaller block size."""
        if block_size > self.config.block_size:
            raise ValueError(f"Cannot crop block size to {block_size}, it is only {self.config.block_size}")
        self.config.block_size = block_size
        self.wpe.weight = nn.Parameter(self.wpe.weight[:block_size])

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        return configure_optimizers(self, weight_decay, learning_rate, betas, device_type)


def configure_optimizers(
    model: nn.Module, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
) -> torch.optim.AdamW:
    """
    AdamW over model's trainable parameters. Matrices (embeddings, Linear
    weights) are decayed; biases and LayerNorm gains are not. Works on any
    module, so a model that wraps a Backbone can call it on itself.
    """
    # named_parameters() yields a tied parameter once, so it lands in exactly one group
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    decay_params = [p for p in params if p.dim() >= 2]
    nodecay_params = [p for p in params if p.dim() < 2]
    optim_groups = [
        {"params": decay_params, "weight_decay": weight_decay},
        {"params": nodecay_params, "weight_decay": 0.0},
    ]
    # the fused kernel updates all parameters in one pass: on a 2-core CPU it is ~10x
    # faster than the default per-tensor loop (torch >= 2.4 has it for the CPU too)
    use_fused = "fused" in inspect.signature(torch.optim.AdamW).parameters and device_type in ("cuda", "cpu")
    extra_args = dict(fused=True) if use_fused else dict()
    return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)


def gpt2_config_args(name_or_dir: str) -> dict:
    """
    Backbone config arguments for a released GPT-2 size (gpt2, gpt2-medium,
    gpt2-large, gpt2-xl) or a local Hugging Face GPT-2 checkpoint directory.
    """
    if name_or_dir in GPT2_SIZES:
        n_layer, n_head, n_embd = GPT2_SIZES[name_or_dir]
        return dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=50257, block_size=1024, bias=True)
    if os.path.isfile(os.path.join(name_or_dir, "config.json")):
        from transformers import GPT2Config

        hf = GPT2Config.from_pretrained(name_or_dir)
        return dict(
            n_layer=hf.n_layer,
            n_head=hf.n_head,
            n_embd=hf.n_embd,
            vocab_size=hf.vocab_size,
            block_size=hf.n_positions,
            bias=True,
        )
    raise ValueError(f"{name_or_dir!r} is neither a GPT-2 model name nor a directory with a config.json")


def load_gpt2_weights(backbone: Backbone, name_or_dir: str) -> None:
    """Copy Hugging Face GPT-2 weights into a Backbone built from gpt2_config_args(name_or_dir)."""
    from transformers import GPT2LMHeadModel

    sd_hf = GPT2LMHeadModel.from_pretrained(name_or_dir).state_dict()
    # HF prefixes the body with "transformer."; lm_head is tied to wte, so copying wte covers it.
    # Older checkpoints also carry the causal mask as non-parameter buffers, which we don't need.
    sd_hf = {
        k.removeprefix("transformer."): v
        for k, v in sd_hf.items()
        if k.startswith("transformer.") and not k.endswith((".attn.bias", ".attn.masked_bias"))
    }
    sd = backbone.state_dict()
    expected = [k for k in sd if k != "lm_head.weight"]
    missing = [k for k in expected if k not in sd_hf]
    unexpected = [k for k in sd_hf if k not in sd]
    if missing or unexpected:
        raise ValueError(f"GPT-2 checkpoint keys do not match: missing {missing}, unexpected {unexpected}")

    with torch.no_grad():
        for k in expected:
            w = sd_hf[k].t() if k.endswith(CONV1D_WEIGHTS) else sd_hf[k]
            if w.shape != sd[k].shape:
                raise ValueError(f"Shape mismatch for {k}: checkpoint {tuple(w.shape)}, backbone {tuple(sd[k].shape)}")
            sd[k].copy_(w)
