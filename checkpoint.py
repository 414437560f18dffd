"""
Checkpoint files for the training scripts.

nanoGPT keeps a single ckpt.pt; we keep one file per save, out_dir/ckpt_<iter>.pt
with the iteration zero-padded to 8 digits, so a run can be resumed or
evaluated from any saved step. Saves are atomic, and loads use
weights_only=True, so a checkpoint may hold only tensors and plain Python
values (numbers, strings, None, lists, tuples, dicts).
"""
import os
import re
import tempfile

import torch

_CKPT_NAME = re.compile(r"ckpt_(\d+)\.pt")


def save_checkpoint(checkpoint: dict, out_dir: str, iter_num: int) -> str:
    """Write checkpoint to out_dir/ckpt_<iter_num>.pt atomically; return the path."""
    if iter_num < 0:
        raise ValueError(f"iter_num must be >= 0, got {iter_num}")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"ckpt_{iter_num:08d}.pt")
    # the temp name never matches ckpt_<n>.pt, so a crash mid-write can't be
    # mistaken for a checkpoint; same directory so os.replace stays atomic
    fd, tmp = tempfile.mkstemp(prefix=".ckpt_", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            # on disk before the rename, or a power cut could leave the real
            # name pointing at an empty file
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def latest_checkpoint(out_dir: str) -> str:
    """Return the path of the ckpt_<n>.pt in out_dir with the highest n."""
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"no checkpoint in {out_dir!r}: directory does not exist")
    iters = {}
    for name in os.listdir(out_dir):
        match = _CKPT_NAME.fullmatch(name)
        if match and os.path.isfile(os.path.join(out_dir, name)):
            iters[int(match.group(1))] = name
    if not iters:
        raise FileNotFoundError(f"no checkpoint (ckpt_*.pt) in {out_dir!r}")
    return os.path.join(out_dir, iters[max(iters)])


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint saved by save_checkpoint, allowing no arbitrary pickles."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        message = " ".join(str(e).split())
        raise ValueError(f"{path!r} is not a loadable checkpoint: "
                         f"{type(e).__name__}: {message}") from e
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path!r} is not a checkpoint: it holds a "
                         f"{type(checkpoint).__name__}, not a dict")
    return checkpoint


def resolve_checkpoint(init_from: str, out_dir: str) -> str:
    """Map init_from ('resume', 'latest' or a .pt path) to a checkpoint path."""
    if init_from in ("resume", "latest"):
        return latest_checkpoint(out_dir)
    if init_from.endswith(".pt"):
        if not os.path.isfile(init_from):
            raise FileNotFoundError(f"checkpoint {init_from!r} not found")
        return init_from
    raise ValueError(f"init_from {init_from!r} is not 'resume', 'latest' "
                     f"or a path to a .pt file")
