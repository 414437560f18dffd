"""Tests for run/checkpoint.py: atomic saves, weights_only round trips, picking the latest,
pruning, non-finite weights, checksums, failed writes, and out_dir checks and locks."""
import os
import resource
import subprocess
import sys

import pytest
import torch

from run.checkpoint import (CHECKSUM_KEY, MODEL_CHECKSUM_KEY, OutDirError, check_resumable, checkpoint_iters,
                            failed_save_message, latest_checkpoint, load_checkpoint, prepare_out_dir, prune_checkpoints,
                            remove_orphan_temp_files, resolve_checkpoint, save_checkpoint, state_dict_sha256,
                            unlock_out_dir)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def training_checkpoint() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "model_args": {"n_layer": 2, "n_embd": 4, "bias": False, "dropout": 0.0, "name": "tiny"},
        "iter_num": 7,
        "best_val_loss": 1.25,
        "config": {"out_dir": "out", "lr": 1e-3, "betas": (0.9, 0.95), "seed": None},
        "rng_state": torch.get_rng_state(),
        "cuda_rng_state": None,
        "kind": "predictor",
    }


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


def listing(out_dir) -> list[str]:
    return sorted(os.listdir(out_dir))


def test_round_trip_with_weights_only(tmp_path):
    checkpoint = training_checkpoint()
    path = save_checkpoint(checkpoint, str(tmp_path / "run"), 7)
    assert path == os.path.join(str(tmp_path / "run"), "ckpt_00000007.pt")
    loaded = load_checkpoint(path)
    assert_same(checkpoint, loaded)
    assert loaded["rng_state"].dtype == torch.uint8

    model = torch.nn.Linear(4, 3)
    model.load_state_dict(loaded["model"])
    optimizer = torch.optim.AdamW(model.parameters())
    optimizer.load_state_dict(loaded["optimizer"])
    torch.set_rng_state(loaded["rng_state"])


def test_round_trip_with_cuda_rng_state_list(tmp_path):
    checkpoint = training_checkpoint()
    checkpoint["cuda_rng_state"] = [torch.get_rng_state(), torch.get_rng_state()]
    loaded = load_checkpoint(save_checkpoint(checkpoint, str(tmp_path), 1))
    assert_same(checkpoint, loaded)


def test_save_overwrites_same_iteration_and_leaves_no_temp_files(tmp_path):
    save_checkpoint({"iter_num": 1}, str(tmp_path), 3)
    path = save_checkpoint({"iter_num": 2}, str(tmp_path), 3)
    save_checkpoint({"iter_num": 4}, str(tmp_path), 4)
    assert listing(tmp_path) == ["ckpt_00000003.pt", "ckpt_00000004.pt"]
    assert load_checkpoint(path) == {"iter_num": 2}


def test_failed_save_leaves_nothing_behind(tmp_path):
    save_checkpoint({"iter_num": 1}, str(tmp_path), 5)
    with pytest.raises(Exception):
        save_checkpoint({"unpicklable": lambda: None}, str(tmp_path), 5)
    with pytest.raises(Exception):
        save_checkpoint({"unpicklable": lambda: None}, str(tmp_path), 6)
    assert listing(tmp_path) == ["ckpt_00000005.pt"]
    assert load_checkpoint(str(tmp_path / "ckpt_00000005.pt")) == {"iter_num": 1}


def test_negative_iteration_rejected(tmp_path):
    with pytest.raises(ValueError):
        save_checkpoint({}, str(tmp_path), -1)


def test_latest_uses_iteration_not_mtime(tmp_path):
    newer = save_checkpoint({"iter_num": 10}, str(tmp_path), 10)
    older = save_checkpoint({"iter_num": 9}, str(tmp_path), 9)
    os.utime(newer, (1_000_000, 1_000_000))
    os.utime(older, (2_000_000_000, 2_000_000_000))
    assert latest_checkpoint(str(tmp_path)) == newer


def test_latest_ignores_other_files(tmp_path):
    path = save_checkpoint({}, str(tmp_path), 2)
    for name in [".ckpt_abc.tmp", "ckpt_99999999.pt.tmp", "ckpt.pt", "ckpt_final.pt", "notes.txt"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "ckpt_00000050.pt").mkdir()
    assert latest_checkpoint(str(tmp_path)) == path


def test_latest_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as exc:
        latest_checkpoint(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(exc.value)
    with pytest.raises(FileNotFoundError) as exc:
        latest_checkpoint(str(tmp_path))
    assert str(tmp_path) in str(exc.value) and "\n" not in str(exc.value)


def test_load_missing(tmp_path):
    path = str(tmp_path / "ckpt_00000001.pt")
    with pytest.raises(FileNotFoundError) as exc:
        load_checkpoint(path)
    assert path in str(exc.value)


def test_load_garbage_is_value_error(tmp_path):
    path = tmp_path / "ckpt_00000001.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError) as exc:
        load_checkpoint(str(path))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_load_refuses_arbitrary_pickles(tmp_path):
    path = str(tmp_path / "evil.pt")
    torch.save({"obj": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(ValueError) as exc:
        load_checkpoint(path)
    assert path in str(exc.value) and "\n" not in str(exc.value)


def test_load_non_dict_is_value_error(tmp_path):
    path = str(tmp_path / "list.pt")
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(path)


def test_resolve(tmp_path):
    save_checkpoint({}, str(tmp_path), 1)
    latest = save_checkpoint({}, str(tmp_path), 20)
    assert resolve_checkpoint("resume", str(tmp_path)) == latest
    assert resolve_checkpoint("latest", str(tmp_path)) == latest
    explicit = str(tmp_path / "ckpt_00000001.pt")
    assert resolve_checkpoint(explicit, "unused") == explicit


def test_resolve_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        resolve_checkpoint("resume", str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in str(exc.value)
    missing = str(tmp_path / "ckpt_00000003.pt")
    with pytest.raises(FileNotFoundError) as exc:
        resolve_checkpoint(missing, str(tmp_path))
    assert missing in str(exc.value)
    with pytest.raises(ValueError) as exc:
        resolve_checkpoint("scratch", str(tmp_path))
    assert "'scratch'" in str(exc.value)


# ----------------------------------------------------------------------------- odd files, pruning


def odd_out_dir(tmp_path) -> str:
    """Checkpoints 2, 3, 4 among files and directories that are not checkpoints."""
    out = str(tmp_path)
    for i in (2, 3, 4):
        save_checkpoint({"iter_num": i}, out, i)
    for name in ["ckpt_8.pt", "ckpt_000000009.pt", ".ckpt_x.tmp", "ckpt_00000005.pt.tmp", "notes.txt"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "ckpt_00000050.pt").mkdir()
    os.symlink(tmp_path / "ckpt_00000002.pt", tmp_path / "ckpt_00000060.pt")
    return out


def test_only_padded_regular_files_are_checkpoints(tmp_path):
    out = odd_out_dir(tmp_path)
    assert checkpoint_iters(out) == [2, 3, 4]
    assert latest_checkpoint(out) == os.path.join(out, "ckpt_00000004.pt")
    assert checkpoint_iters(str(tmp_path / "missing")) == []
    # iterations past 8 digits are named with all of theirs
    save_checkpoint({}, out, 123_456_789)
    assert checkpoint_iters(out)[-1] == 123_456_789


def test_prune_touches_only_checkpoints(tmp_path):
    out = odd_out_dir(tmp_path)
    removed = prune_checkpoints(out, 1)
    assert removed == [os.path.join(out, "ckpt_00000002.pt"), os.path.join(out, "ckpt_00000003.pt")]
    assert listing(tmp_path) == sorted([".ckpt_x.tmp", "ckpt_00000004.pt", "ckpt_000000009.pt", "ckpt_00000005.pt.tmp",
                                        "ckpt_00000050.pt", "ckpt_00000060.pt", "ckpt_8.pt", "notes.txt"])
    assert prune_checkpoints(out, 1) == []
    with pytest.raises(ValueError):
        prune_checkpoints(out, 0)


def test_orphan_temp_files_removed(tmp_path):
    out = odd_out_dir(tmp_path)
    (tmp_path / ".ckpt_dir.tmp").mkdir()
    assert remove_orphan_temp_files(out) == [os.path.join(out, ".ckpt_x.tmp")]
    assert ".ckpt_dir.tmp" in listing(tmp_path) and "ckpt_00000005.pt.tmp" in listing(tmp_path)


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_never_saved(tmp_path, bad):
    good = save_checkpoint(training_checkpoint(), str(tmp_path), 1)
    checkpoint = training_checkpoint()
    checkpoint["model"]["bias"] = checkpoint["model"]["bias"].to(torch.bfloat16)
    checkpoint["model"]["bias"][1] = bad
    with pytest.raises(ValueError, match="'bias' is not finite") as exc:
        save_checkpoint(checkpoint, str(tmp_path), 2)
    assert listing(tmp_path) == ["ckpt_00000001.pt"]
    message = failed_save_message(exc.value, str(tmp_path), 2)
    assert message.endswith(f"last good checkpoint kept: {good}") and "\n" not in message


def test_load_refuses_non_finite_weights(tmp_path):
    checkpoint = training_checkpoint()
    checkpoint["model"]["weight"][0, 0] = float("nan")
    path = str(tmp_path / "ckpt_00000001.pt")
    torch.save(checkpoint, path)  # as an old or foreign writer would
    with pytest.raises(ValueError, match="non-finite model weight \\('weight'") as exc:
        load_checkpoint(path)
    assert path in str(exc.value) and "\n" not in str(exc.value)


def test_checksum_saved_verified_and_optional(tmp_path):
    path = save_checkpoint(training_checkpoint(), str(tmp_path), 1)
    raw = torch.load(path, weights_only=True)
    assert len(raw[CHECKSUM_KEY]) == 64
    assert CHECKSUM_KEY not in load_checkpoint(path)
    # one changed value anywhere under the saved checksum: corrupt
    for change in (lambda c: c["model"]["weight"].view(-1)[0].add_(1),
                   lambda c: c["optimizer"]["state"][0]["exp_avg"].view(torch.uint8).view(-1)[3].bitwise_xor_(1),
                   lambda c: c["config"].update(seed=2)):
        changed = torch.load(path, weights_only=True)
        change(changed)
        torch.save(changed, tmp_path / "changed.pt")
        with pytest.raises(ValueError, match="is corrupt: its contents do not match") as exc:
            load_checkpoint(str(tmp_path / "changed.pt"))
        assert "\n" not in str(exc.value)
    # an older checkpoint, with a checksum of its model tensors only: verified by it
    del raw[CHECKSUM_KEY]
    raw[MODEL_CHECKSUM_KEY] = state_dict_sha256(raw["model"])
    torch.save(raw, path)
    assert MODEL_CHECKSUM_KEY not in load_checkpoint(path)
    raw["model"]["weight"][0, 0] += 1
    torch.save(raw, path)
    with pytest.raises(ValueError, match="is corrupt: its model weights do not match"):
        load_checkpoint(path)
    # a checkpoint from before checksums loads
    del raw[MODEL_CHECKSUM_KEY]
    torch.save(raw, path)
    assert torch.equal(load_checkpoint(path)["model"]["weight"], raw["model"]["weight"])


def test_failed_write_is_os_error_and_keeps_the_last_checkpoint(tmp_path):
    good = save_checkpoint({"iter_num": 1}, str(tmp_path), 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # files may not grow past 64 KiB (as on a full disk); Python ignores SIGXFSZ, so a
    # write past it fails with EFBIG, which torch's zip writer would report as a RuntimeError
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, hard))
    try:
        with pytest.raises(OSError) as exc:
            save_checkpoint({"model": {"w": torch.zeros(100_000)}}, str(tmp_path), 2)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert listing(tmp_path) == ["ckpt_00000001.pt"]
    message = failed_save_message(exc.value, str(tmp_path), 2)
    assert message == (f"checkpoint of iter 2 not saved in {str(tmp_path)!r}: File too large; its temp file was "
                       f"removed; last good checkpoint kept: {good}")


# ----------------------------------------------------------------------------- out_dir


def test_out_dir_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("x")
    for out, reason in [(tmp_path / "file", "File exists"), (tmp_path / "file" / "out", "Not a directory")]:
        with pytest.raises(OutDirError) as exc:
            prepare_out_dir(str(out))
        assert str(exc.value) == f"out_dir {str(out)!r} cannot be written ({reason})"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_out_dir(tmp_path):
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o555)
    with pytest.raises(OutDirError, match="cannot be written"):
        prepare_out_dir(str(tmp_path / "ro"))


HOLDER = """
import fcntl, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f, fcntl.LOCK_EX)
f.truncate(0); f.write("pid 4242: python train_predictor.py --out_dir=x\\n"); f.flush()
print("locked", flush=True)
time.sleep(120)
"""


def test_lock_refuses_a_second_run_until_the_first_ends(tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, os.path.join(out, ".lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(OutDirError) as exc:
            prepare_out_dir(out)
        assert str(exc.value) == (f"out_dir {out!r} is in use by another run (pid 4242: python train_predictor.py "
                                  f"--out_dir=x); wait for it to end or use another out_dir")
    finally:
        holder.kill()  # a crash: the OS drops its lock
        holder.wait()
    (tmp_path / "out" / ".ckpt_abc.tmp").write_text("half a save")
    try:
        assert prepare_out_dir(out) == [os.path.join(out, ".ckpt_abc.tmp")]
        assert (tmp_path / "out" / ".lock").read_text().startswith(f"pid {os.getpid()}: ")
        assert listing(tmp_path / "out") == [".lock"]
    finally:
        unlock_out_dir(out)


# ----------------------------------------------------------------------------- resume


def test_check_resumable(tmp_path):
    checkpoint = training_checkpoint() | {"config": {"seed": 1, "batch_size": 4}}
    args = checkpoint["model_args"]
    keys = ("n_layer", "n_embd", "dropout")
    config = {"n_layer": 2, "n_embd": 8, "dropout": 0.3, "seed": 1, "batch_size": 4}
    # not set again: the checkpoint's shape; dropout set again: honoured
    assert check_resumable(checkpoint, "c.pt", config, [], keys, ("seed",)) == args
    assert check_resumable(checkpoint, "c.pt", config, ["dropout"], keys, ("seed",)) == args | {"dropout": 0.3}
    assert check_resumable(checkpoint, "c.pt", config | {"n_layer": 2}, ["n_layer"], keys, ()) == args
    with pytest.raises(ValueError) as exc:
        check_resumable(checkpoint, "c.pt", config, ["n_embd"], keys, ())
    assert str(exc.value).startswith("n_embd=8 differs from the checkpoint's n_embd=4")
    with pytest.raises(ValueError, match="'c.pt' cannot be resumed: it has no optimizer, rng_state"):
        check_resumable({k: v for k, v in checkpoint.items() if k not in ("optimizer", "rng_state")},
                        "c.pt", config, [], keys, ())
    with pytest.raises(ValueError, match="its config has no p_power"):
        check_resumable(checkpoint, "c.pt", config, [], keys, ("seed", "p_power"))
    # another start from a checkpoint (train.py's warm start) reads other keys
    with pytest.raises(ValueError, match="^'c.pt' cannot start a language model: it has no model_args$"):
        check_resumable({"model": {}}, "c.pt", config, [], keys, (), needs=("model", "model_args"),
                        use="start a language model")
