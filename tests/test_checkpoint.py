"""Tests for checkpoint.py: atomic saves, weights_only round trips, picking the latest."""
import os

import pytest
import torch

from checkpoint import latest_checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint


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
        "data_position": 12345,
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
