"""
Checkpoint files and the out_dir of the training scripts.

nanoGPT keeps a single ckpt.pt; we keep one file per save, out_dir/ckpt_<iter>.pt
with the iteration zero-padded to 8 digits, so a run can be resumed or
evaluated from any saved step. Only regular files named exactly as save_checkpoint
names them (ckpt_00000008.pt, not ckpt_8.pt, and no directory or symlink) count as
checkpoints: latest_checkpoint, checkpoint_iters and prune_checkpoints ignore
everything else in out_dir.

Saves are atomic (a temp file .ckpt_*.tmp, then a rename); a failed save removes
its temp file and leaves the checkpoints before it as they were. A model state dict
with a NaN or infinite tensor is never saved, and a checkpoint with one is never
loaded. Saves store a sha256 of everything the checkpoint holds (key sha256: weights,
optimizer state, RNG states, config) that loads verify and drop; older checkpoints
with a sha256 of their model tensors only (model_sha256) are verified by that, and
checkpoints with neither load unverified. Loads use
weights_only=True, so a checkpoint may hold only tensors and plain Python values
(numbers, strings, None, lists, tuples, dicts).

prepare_out_dir makes a run's out_dir: it checks that the directory can be written,
takes an exclusive lock on out_dir/.lock (fcntl.flock, held until the process exits,
also when it crashes) so that a second run in the same out_dir stops at once, and
removes temp files that a crash mid-save left behind.
"""
import fcntl
import hashlib
import os
import re
import shlex
import sys
import tempfile

import torch

from errors import one_line

_CKPT_NAME = re.compile(r"ckpt_(\d{8,})\.pt")
_TEMP_PREFIX, _TEMP_SUFFIX = ".ckpt_", ".tmp"
CHECKSUM_KEY = "sha256"
MODEL_CHECKSUM_KEY = "model_sha256"  # older saves: a sha256 of the model tensors only
LOCK_NAME = ".lock"


class OutDirError(Exception):
    """out_dir cannot hold this run: not writable, or locked by another run."""


def checkpoint_name(iter_num: int) -> str:
    return f"ckpt_{iter_num:08d}.pt"


# ----------------------------------------------------------------------------- weights


def first_non_finite_tensor(state_dict: dict) -> str | None:
    """Key of the first floating-point (or complex) tensor with a NaN or infinite entry."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
            if not torch.isfinite(value).all():
                return key
    return None


def _update_with_tensor(digest, t: torch.Tensor) -> None:
    t = t.detach()
    digest.update(f"{t.dtype}\0{tuple(t.shape)}\0".encode())
    digest.update(t.contiguous().reshape(-1).view(torch.uint8).cpu().numpy())


def state_dict_sha256(state_dict: dict) -> str:
    """sha256 over the tensors of a state dict in key order: each key, dtype, shape and
    the raw bytes, so a flipped bit, a reshaped or renamed tensor all change it (the
    model_sha256 of older checkpoints)."""
    digest = hashlib.sha256()
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor):
            digest.update(f"{key}\0".encode())
            _update_with_tensor(digest, value)
    return digest.hexdigest()


def checkpoint_sha256(checkpoint: dict) -> str:
    """sha256 over everything a checkpoint holds, in order: dicts, lists and tuples by
    their items, tensors by dtype, shape and raw bytes, other values by type and repr
    (exact for the numbers, strings and None a checkpoint may hold), so a flipped bit in
    the weights, the optimizer state, an RNG state or the config changes it."""
    digest = hashlib.sha256()

    def update(value) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(b"tensor\0")
            _update_with_tensor(digest, value)
        elif isinstance(value, dict):
            digest.update(f"dict {len(value)}\0".encode())
            for key, item in value.items():
                update(key)
                update(item)
        elif isinstance(value, (list, tuple)):
            digest.update(f"{type(value).__name__} {len(value)}\0".encode())
            for item in value:
                update(item)
        else:
            digest.update(f"{type(value).__name__} {value!r}\0".encode())

    update(checkpoint)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- files


class _RecordingWriter:
    """A file that remembers the OSError of a failed write: torch.save reports one as a
    RuntimeError of its zip writer ("unexpected pos ..."), which would hide ENOSPC."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        return self.f.flush()


def save_checkpoint(checkpoint: dict, out_dir: str, iter_num: int) -> str:
    """Write checkpoint to out_dir/ckpt_<iter_num>.pt atomically; return the path.

    ValueError, before anything is written, if iter_num < 0 or a tensor of
    checkpoint["model"] is not finite; OSError if writing fails (the disk is full):
    then the temp file is removed and any checkpoint already in out_dir is untouched."""
    if iter_num < 0:
        raise ValueError(f"iter_num must be >= 0, got {iter_num}")
    model = checkpoint.get("model")
    if isinstance(model, dict):
        bad = first_non_finite_tensor(model)
        if bad is not None:
            raise ValueError(f"model weight {bad!r} is not finite (NaN or infinite): not saved")
    # a checksum of what is saved now, not one a loaded checkpoint came with
    checkpoint = {k: v for k, v in checkpoint.items() if k not in (CHECKSUM_KEY, MODEL_CHECKSUM_KEY)}
    checkpoint[CHECKSUM_KEY] = checkpoint_sha256(checkpoint)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, checkpoint_name(iter_num))
    # the temp name never matches ckpt_<n>.pt, so a crash mid-write can't be
    # mistaken for a checkpoint; same directory so os.replace stays atomic
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX, dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _RecordingWriter(f)
            try:
                torch.save(checkpoint, writer)
            except RuntimeError as e:
                if writer.error is not None:
                    raise writer.error from e
                raise
            # on disk before the rename, or a power cut could leave the real
            # name pointing at an empty file
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def checkpoint_iters(out_dir: str) -> list[int]:
    """Iterations of the checkpoints in out_dir, ascending: regular files (not symlinks)
    named exactly checkpoint_name(n). [] if out_dir does not exist."""
    try:
        entries = list(os.scandir(out_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    iters = []
    for entry in entries:
        match = _CKPT_NAME.fullmatch(entry.name)
        if match and entry.name == checkpoint_name(int(match.group(1))) and entry.is_file(follow_symlinks=False):
            iters.append(int(match.group(1)))
    return sorted(iters)


def latest_checkpoint(out_dir: str) -> str:
    """Return the path of the checkpoint in out_dir with the highest iteration."""
    if not os.path.isdir(out_dir):
        raise FileNotFoundError(f"no checkpoint in {out_dir!r}: directory does not exist")
    iters = checkpoint_iters(out_dir)
    if not iters:
        raise FileNotFoundError(f"no checkpoint (ckpt_<8 digits>.pt) in {out_dir!r}")
    return os.path.join(out_dir, checkpoint_name(iters[-1]))


def prune_checkpoints(out_dir: str, keep: int) -> list[str]:
    """Delete all but the `keep` newest checkpoints of out_dir; return the removed paths.
    Files that are not checkpoints (see checkpoint_iters) are never touched."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    removed = []
    for old in checkpoint_iters(out_dir)[:-keep]:
        path = os.path.join(out_dir, checkpoint_name(old))
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def remove_orphan_temp_files(out_dir: str) -> list[str]:
    """Delete the temp files (.ckpt_*.tmp) that a save interrupted by a crash left in
    out_dir; return their paths. Only safe while holding out_dir's lock."""
    removed = []
    try:
        entries = list(os.scandir(out_dir))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if (entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(_TEMP_SUFFIX)
                and entry.is_file(follow_symlinks=False)):
            try:
                os.remove(entry.path)
            except FileNotFoundError:
                continue
            removed.append(entry.path)
    return removed


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint saved by save_checkpoint, allowing no arbitrary pickles.

    ValueError (one line) if the file is not a checkpoint, its contents (or, in an
    older checkpoint, its model weights) do not match the sha256 saved with them, or
    a model weight is NaN or infinite."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path!r} is not a loadable checkpoint: "
                         f"{type(e).__name__}: {one_line(e)}") from e
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path!r} is not a checkpoint: it holds a "
                         f"{type(checkpoint).__name__}, not a dict")
    saved_sha = checkpoint.pop(CHECKSUM_KEY, None)
    if saved_sha is not None and checkpoint_sha256(checkpoint) != saved_sha:
        raise ValueError(f"{path!r} is corrupt: its contents do not match the sha256 saved with them")
    model_sha = checkpoint.pop(MODEL_CHECKSUM_KEY, None)
    model = checkpoint.get("model")
    if isinstance(model, dict):
        if model_sha is not None and state_dict_sha256(model) != model_sha:
            raise ValueError(f"{path!r} is corrupt: its model weights do not match "
                             f"the sha256 saved with them")
        bad = first_non_finite_tensor(model)
        if bad is not None:
            raise ValueError(f"{path!r} has a non-finite model weight ({bad!r} holds NaN or inf): refused")
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


# ----------------------------------------------------------------------------- out_dir

_locks: dict[str, object] = {}  # realpath of out_dir -> open lock file, held by this process


def _check_writable(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_probe_", dir=out_dir)
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        reason = e.strerror or one_line(e)
        raise OutDirError(f"out_dir {out_dir!r} cannot be written ({reason})") from e


def lock_out_dir(out_dir: str) -> None:
    """Take the exclusive lock of out_dir for the rest of this process (OutDirError,
    naming the holder's pid and command, if another process has it). The lock is
    the flock, not the file: the OS drops it when the process ends, however it ends,
    and a stale .lock file holds no lock."""
    key = os.path.realpath(out_dir)
    if key in _locks:
        return
    path = os.path.join(out_dir, LOCK_NAME)
    try:
        f = open(path, "a+")  # not truncated: it may name the run that holds the lock
    except OSError as e:
        raise OutDirError(f"out_dir {out_dir!r}: cannot open {path!r} ({e.strerror or one_line(e)})") from e
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = one_line(f.read()) or "pid unknown"
        f.close()
        raise OutDirError(f"out_dir {out_dir!r} is in use by another run ({holder}); "
                          f"wait for it to end or use another out_dir") from None
    except OSError as e:
        f.close()
        raise OutDirError(f"out_dir {out_dir!r}: cannot lock {path!r} ({e.strerror or one_line(e)})") from e
    f.truncate(0)
    f.write(f"pid {os.getpid()}: {one_line(shlex.join([sys.executable, *sys.argv]))}\n")
    f.flush()
    _locks[key] = f


def unlock_out_dir(out_dir: str) -> None:
    """Release a lock taken by lock_out_dir (a process's exit releases it anyway)."""
    f = _locks.pop(os.path.realpath(out_dir), None)
    if f is not None:
        f.close()


def prepare_out_dir(out_dir: str, lock: bool = True) -> list[str]:
    """Make out_dir for a run; OutDirError (one line) if it cannot be written or
    another run holds it. With lock, also lock it (lock_out_dir) and then remove
    orphan temp files; returns their paths."""
    if not lock:  # a run that writes nothing (eval_only) only needs the directory
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise OutDirError(f"out_dir {out_dir!r} cannot be made ({e.strerror or one_line(e)})") from e
        return []
    _check_writable(out_dir)
    lock_out_dir(out_dir)
    return remove_orphan_temp_files(out_dir)


def failed_save_message(error: Exception, out_dir: str, iter_num: int) -> str:
    """One line for a save_checkpoint that raised: what failed and which checkpoint is kept."""
    iters = checkpoint_iters(out_dir)
    last = os.path.join(out_dir, checkpoint_name(iters[-1])) if iters else "none"
    if isinstance(error, OSError):
        reason = f"{error.strerror or one_line(error)}; its temp file was removed"
    else:
        reason = one_line(error)
    return f"checkpoint of iter {iter_num} not saved in {out_dir!r}: {reason}; last good checkpoint kept: {last}"


# ----------------------------------------------------------------------------- resume

# what a resumed training run reads from its checkpoint
RESUME_KEYS = ("model", "optimizer", "model_args", "iter_num", "best_val_loss", "config", "rng_state")


def check_resumable(checkpoint: dict, path: str, config: dict, overridden, model_keys, data_keys,
                    honoured=("dropout",), needs=RESUME_KEYS, use="be resumed") -> dict:
    """The model_args to rebuild a checkpoint's model for resuming it (or, with other
    `needs` and `use`, for another start from it: train.py's warm start).

    ValueError (one line) if the checkpoint lacks a key the start reads (needs, or
    data_keys in its config), or if a model key that the command line or a config
    file set (overridden) differs from the checkpoint's: a run that starts from a
    checkpoint keeps its shape. Keys in `honoured` (dropout) are not shape: the set
    value is used, and saved with the next checkpoint."""
    missing = [k for k in needs if k not in checkpoint]
    if missing:
        raise ValueError(f"{path!r} cannot {use}: it has no {', '.join(missing)}")
    args, saved = checkpoint["model_args"], checkpoint.get("config", {})
    if not isinstance(args, dict) or not isinstance(saved, dict):
        raise ValueError(f"{path!r} cannot {use}: its model_args and config are not dicts")
    missing = [k for k in data_keys if k not in saved]
    if missing:
        raise ValueError(f"{path!r} cannot {use}: its config has no {', '.join(missing)}")
    for k in model_keys:
        if k in overridden and k in args and k not in honoured and config[k] != args[k]:
            raise ValueError(f"{k}={config[k]!r} differs from the checkpoint's {k}={args[k]!r}: a run that starts "
                             f"from {path!r} keeps its model shape; drop the {k} setting, or train from "
                             f"scratch in another out_dir")
    return args | {k: config[k] for k in honoured if k in overridden and k in args}
