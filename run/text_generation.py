"""Running a train.py language model: reading a text's literals as training did, and
decoding (sample.py, evaluate.py)."""
from typing import Iterator

import numpy as np
import torch

from data.dagset.text_format import GPT2_VOCAB, PAD_TOKEN, gpt2_encoding
from data.dagset.text_stream import question, row_literals
from models.dag_heads import Literals
from models.dag_model import GPT


def literals_of(idx: torch.Tensor) -> Literals:
    """The literals of token rows idx (B, T), as the text stream reads them (row_literals)."""
    enc = gpt2_encoding()
    rows = [row_literals([enc.decode_single_token_bytes(t) for t in row], idx.shape[1]) for row in idx.tolist()]
    return Literals(*(torch.from_numpy(np.stack([r[k] for r in rows])).to(idx.device)
                      for k in ("lit_index", "lit_value", "lit_end")))


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             stop: tuple[int, ...] = ()) -> Iterator[int]:
    """nanoGPT's generate for either kind of model, token by token as they are made:
    idx (1, T) continued by up to max_new_tokens tokens of GPT-2's vocabulary (never
    one of the padding ids past it, which the model's 50,304 rows hold but no text
    has); temperature 0 decodes greedily; stops after a token in stop."""
    for _ in range(max_new_tokens):
        context = idx[:, -model.config.block_size:]
        literals = literals_of(context) if model.config.dag_depth else None
        logits = model(context, literals=literals).logits[:, -1, :GPT2_VOCAB].double()  # (1, vocab)
        if temperature == 0:
            next_token = logits.argmax(-1, keepdim=True)
        else:
            # from the largest logit down, in float64: any temperature > 0 sends the others
            # to at most -inf, never to inf - inf (nan); a tiny one samples the most likely
            logits = (logits - logits.max(-1, keepdim=True).values) / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            next_token = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1)
        idx = torch.cat((idx, next_token), dim=1)
        yield next_token.item()
        if next_token.item() in stop:
            break


def complete_line(model: GPT, prompt: str, max_new_tokens: int = 32) -> str:
    """The model's greedy continuation of a prompt, up to the end of its line; ValueError
    when the prompt leaves no room in block_size for a token."""
    enc = gpt2_encoding()
    tokens = enc.encode_ordinary(prompt)
    if len(tokens) >= model.config.block_size:
        raise ValueError(f"the prompt {prompt!r} is {len(tokens)} tokens, not less than "
                         f"block_size={model.config.block_size}")
    device = next(model.parameters()).device
    stop = (PAD_TOKEN, *enc.encode_ordinary("\n"), *enc.encode_ordinary("\n\n"))
    out = generate(model, torch.tensor([tokens], device=device), max_new_tokens, temperature=0, stop=stop)
    return enc.decode(list(out)).replace("<|endoftext|>", "").split("\n")[0].strip()


def answer(model: GPT, expression: str, max_new_tokens: int = 32) -> str:
    """The model's answer to the question format of training, greedily decoded up to
    the end of its line."""
    return complete_line(model, question(expression), max_new_tokens)
