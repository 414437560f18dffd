"""The batch record of both data streams (streaming.py: expressions; text_stream.py:
texts with their answers), read by the models' DAG heads, the losses and evaluation.

A row is one example's arrays, a dict keyed by Batch's field names (T,) or (T, ...),
as an example is made; `collate` stacks rows into a Batch of tensors (B, T, ...).
D is the DAG's dag_depth: D input nodes, D steps, 2D nodes in all.
"""
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

# the per-token DAG targets: what a position of an expression's text denotes
DAG_TARGETS = ("V_mag", "V_sign", "O", "G", "value", "V_src", "mask")


@dataclass
class Batch:
    idx: torch.Tensor  # (B, T) int64: GPT-2 tokens, PAD_TOKEN past the text
    V_mag: torch.Tensor  # (B, T, 2D) float64: input magnitudes (nodes past D: 0)
    V_sign: torch.Tensor  # (B, T, 2D) float64: input signs +-1
    O: torch.Tensor  # (B, T, D, 2D) float64: step k's coefficient of node j
    G: torch.Tensor  # (B, T, D) float64: step k is linear (1) or log domain (0)
    value: torch.Tensor  # (B, T) float64: the exact value of the text so far
    V_src: torch.Tensor  # (B, T, D) int64: token where input i's literal ends; -1 none, -2 not in the text
    mask: torch.Tensor  # (B, T) bool: the position has DAG targets
    lit_index: torch.Tensor  # (B, T) int64: 1 + the literal the token belongs to (models.dag_heads.Literals)
    lit_value: torch.Tensor  # (B, T) float64: the literal ending at the token, else 0
    lit_end: torch.Tensor  # (B, T) bool: a literal ends at the token
    targets: torch.Tensor | None = None  # (B, T) int64: the next token, -1 past the text (text rows only)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def map(self, fn) -> "Batch":
        return replace(self, **{k: fn(v) for k, v in self.tensors().items()})

    def to(self, device, non_blocking: bool = True) -> "Batch":
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls it
        return self.map(torch.Tensor.pin_memory)

    def trim(self, multiple: int = 1) -> "Batch":
        """The batch cut after the last position any example uses (its DAG mask; for
        text rows, its next-token targets), rounded up to a multiple of `multiple`
        (fewer shapes for a compiled model). Most positions are padding after short
        texts; the model is causal, so no loss, metric or prediction at a kept position
        reads a cut one."""
        used = self.mask if self.targets is None else self.targets >= 0
        valid = used.any(0).nonzero()
        T = used.shape[1]
        keep = min(T, -(-(int(valid[-1]) + 1) // multiple) * multiple) if len(valid) else min(T, multiple)
        return self.map(lambda t: t[:, :keep])


def empty_targets(T: int, D: int) -> dict[str, np.ndarray]:
    """The DAG target arrays of T positions that have no target (mask False)."""
    return {
        "V_mag": np.zeros((T, 2 * D)),
        "V_sign": np.ones((T, 2 * D)),
        "O": np.zeros((T, D, 2 * D)),
        "G": np.ones((T, D)),
        "value": np.zeros(T),
        "V_src": np.full((T, D), -1, dtype=np.int64),
        "mask": np.zeros(T, dtype=bool),
    }


def collate(rows: list[dict[str, np.ndarray]]) -> Batch:
    """Rows stacked into a Batch (B, ...)."""
    columns = {k: [row[k] for row in rows] for k in rows[0]}
    # The tensors of one dtype are contiguous views of one buffer: a DataLoader worker
    # passes each storage to the training process through its own shared-memory
    # segment, which costs far more than the copy (3 segments a batch instead of 8
    # halves the transfer time).
    tensors = {}
    for dtype in dict.fromkeys(arrays[0].dtype for arrays in columns.values()):
        keys = [k for k, arrays in columns.items() if arrays[0].dtype == dtype]
        shapes = {k: (len(rows), *columns[k][0].shape) for k in keys}
        buffer = np.empty(sum(int(np.prod(shape)) for shape in shapes.values()), dtype=dtype)
        shared, offset = torch.from_numpy(buffer), 0
        for k in keys:
            n = int(np.prod(shapes[k]))
            np.stack(columns[k], out=buffer[offset:offset + n].reshape(shapes[k]))
            tensors[k] = shared[offset:offset + n].view(shapes[k])
            offset += n
    return Batch(**tensors)
