"""train_predictor.py and evaluate.py under faults, end to end on a tiny model: a second
run in the same out_dir, an out_dir that cannot be written, a full disk at save time,
odd files in out_dir, bad settings, resumes that would change the model's shape,
checkpoints with non-finite weights or missing keys, and an empty --expr."""
import contextlib
import io
import os
import resource
import runpy
import shutil
import subprocess
import sys
from unittest import mock

import pytest
import torch
from tests.script_runs import finish as finish_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_predictor.py")
EVALUATE = os.path.join(ROOT, "evaluate.py")
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--dag_depth=3",
        "--max_expr_depth=2", "--num_workers=0", "--eval_iters=1", "--log_interval=1", "--eval_interval=2"]


def launch(*args: str, fsize_limit: int | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def limit():  # files may not grow past fsize_limit bytes, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.Popen([sys.executable, SCRIPT, *TINY, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=limit if fsize_limit else None)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    return finish_run(proc, ok=False)  # these runs are meant to fail: their caller checks how


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode not in (0, None), result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def files(out_dir) -> list[str]:
    return sorted(os.listdir(out_dir))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """out_dir of a 2-iteration run: ckpt_00000002.pt and .lock."""
    out = tmp_path_factory.mktemp("base") / "out"
    result = finish(launch(f"--out_dir={out}", "--max_iters=2"))
    assert result.returncode == 0, result.stderr
    return out


def copy(base, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(base, out)
    return out


def test_run_holds_the_lock_and_names_itself(base):
    assert files(base) == [".lock", "ckpt_00000002.pt"]
    text = (base / ".lock").read_text()
    assert text.startswith("pid ") and "train_predictor.py" in text and f"--out_dir={base}" in text


def test_second_run_in_the_same_out_dir_stops_at_once(base, tmp_path):
    out = copy(base, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               "f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "f.truncate(0); f.write('pid 777: train_predictor.py --max_iters=9'); f.flush()\n"
                               "print('locked', flush=True); time.sleep(120)", str(out / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = finish(launch(f"--out_dir={out}", "--max_iters=4", "--init_from=resume"))
    finally:
        holder.kill()
        holder.wait()
    one_line_error(result, f"error: out_dir {str(out)!r} is in use by another run "
                           f"(pid 777: train_predictor.py --max_iters=9)")
    assert files(out) == [".lock", "ckpt_00000002.pt"]


def test_full_disk_at_save_keeps_the_last_checkpoint(base, tmp_path):
    out = copy(base, tmp_path)
    before = (out / "ckpt_00000002.pt").read_bytes()
    result = finish(launch(f"--out_dir={out}", "--max_iters=4", "--init_from=resume", fsize_limit=1 << 20))
    one_line_error(result, f"error: checkpoint of iter 4 not saved in {str(out)!r}: File too large; its temp file "
                           f"was removed; last good checkpoint kept: {out / 'ckpt_00000002.pt'}")
    assert files(out) == [".lock", "ckpt_00000002.pt"]
    assert (out / "ckpt_00000002.pt").read_bytes() == before


def test_odd_files_orphan_temp_files_and_dropout_on_resume(base, tmp_path):
    """A resume prunes only checkpoints, removes the temp file of a crashed save, and
    honours a new dropout (saved as used)."""
    out = copy(base, tmp_path)
    (out / "ckpt_8.pt").write_text("not ours")
    (out / "ckpt_00000099.pt").mkdir()
    (out / ".ckpt_crashed.tmp").write_bytes(b"half a checkpoint")
    result = finish(launch(f"--out_dir={out}", "--max_iters=4", "--init_from=resume", "--keep_checkpoints=1",
                           "--dropout=0.2"))
    assert result.returncode == 0, result.stderr
    assert files(out) == [".lock", "ckpt_00000004.pt", "ckpt_00000099.pt", "ckpt_8.pt"]
    ckpt = torch.load(out / "ckpt_00000004.pt", weights_only=True)
    assert ckpt["model_args"]["dropout"] == ckpt["config"]["dropout"] == 0.2


def test_bad_resumes_are_one_line_errors(base, tmp_path):
    outs = {name: copy(base, tmp_path / name) for name in ("shape", "other shape", "keys", "nan")}
    raw = torch.load(outs["other shape"] / "ckpt_00000002.pt", weights_only=True)
    raw["model_args"]["bias"] = True  # a model with biases: the weights lack them
    torch.save(raw, outs["other shape"] / "ckpt_00000002.pt")
    raw = torch.load(outs["keys"] / "ckpt_00000002.pt", weights_only=True)
    del raw["optimizer"]
    torch.save(raw, outs["keys"] / "ckpt_00000002.pt")
    raw = torch.load(outs["nan"] / "ckpt_00000002.pt", weights_only=True)
    next(iter(raw["model"].values()))[0] = float("nan")
    torch.save({k: v for k, v in raw.items() if k != "model_sha256"}, outs["nan"] / "ckpt_00000002.pt")
    (tmp_path / "file").write_text("x")
    runs = {
        "shape": launch(f"--out_dir={outs['shape']}", "--init_from=resume", "--max_iters=4", "--n_layer=3"),
        "other shape": launch(f"--out_dir={outs['other shape']}", "--init_from=resume", "--max_iters=4"),
        "keys": launch(f"--out_dir={outs['keys']}", "--init_from=resume", "--max_iters=4"),
        "nan": launch(f"--out_dir={outs['nan']}", "--init_from=resume", "--max_iters=4"),
        "unwritable": launch(f"--out_dir={tmp_path / 'file' / 'out'}", "--max_iters=4"),
    }
    results = {name: finish(proc) for name, proc in runs.items()}
    one_line_error(results["shape"], "error: n_layer=3 differs from the checkpoint's n_layer=1")
    one_line_error(results["other shape"], "does not fit the model its model_args describe")
    one_line_error(results["keys"], "cannot be resumed: it has no optimizer")
    one_line_error(results["nan"], "has a non-finite model weight")
    one_line_error(results["unwritable"], f"error: out_dir {str(tmp_path / 'file' / 'out')!r} cannot be written "
                                          f"(Not a directory)")
    # nothing was trained or saved
    for name in ("shape", "other shape", "keys", "nan"):
        assert files(outs[name]) == [".lock", "ckpt_00000002.pt"]


@pytest.mark.parametrize("arg, message", [
    ("--grad_clip=-1.0", "error: grad_clip must be >= 0, got -1.0"),
    ("--n_head=3", "error: n_embd=32 must be a multiple of n_head=3"),
    ("--block_size=4", "error: block_size=4 is too small for expressions of depth 1"),
    ("--max_expr_depth=3", "error: max_expr_depth=3 needs dag_depth >= 4"),
])
def test_bad_setting_stops_before_anything_runs(monkeypatch, capsys, tmp_path, arg, message):
    # in this process: the script checks its config before it changes any state
    monkeypatch.setattr(sys, "argv", [SCRIPT, *TINY, f"--out_dir={tmp_path / 'out'}", arg])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(SCRIPT, run_name="__main__")
    assert stop.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "out").exists()


def evaluate(*args: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", [EVALUATE, *args]):
        try:
            runpy.run_path(EVALUATE, run_name="__main__")
        except SystemExit as e:
            status = e.code
    return status, stderr.getvalue()


def test_evaluate_refuses_non_finite_weights_and_an_empty_expr(base, tmp_path):
    raw = torch.load(base / "ckpt_00000002.pt", weights_only=True)
    raw["model"] = {k: v.clone() for k, v in raw["model"].items()}
    next(iter(raw["model"].values()))[0] = float("inf")
    path = tmp_path / "ckpt_00000002.pt"
    torch.save({k: v for k, v in raw.items() if k != "model_sha256"}, path)
    for args, needle in [((f"--ckpt_path={path}",), "has a non-finite model weight"),
                         ((f"--out_dir={base}", "--expr="), "error: --expr is empty"),
                         ((f"--out_dir={base}", "--expressions_file= "), "error: --expressions_file is empty")]:
        status, stderr = evaluate(*args)
        assert status == 1 and len(stderr.splitlines()) == 1 and needle in stderr, stderr
