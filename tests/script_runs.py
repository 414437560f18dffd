"""Running the repo's scripts in tests (as subprocesses, or in this process when they
stop early), and checking what they leave."""
import contextlib
import io
import os
import runpy
import subprocess
import sys
import signal
from unittest import mock

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch_script(cmd_args: list[str], cwd: str = ROOT, launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start `python [launcher] cmd_args...` (a script path and its arguments)."""
    env = os.environ.copy()
    # one thread per process: the runs are tiny and some run side by side on few cores
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    # a session of its own, so that a hung run is killed with all its processes (DDP ranks,
    # DataLoader workers, wandb's service)
    return subprocess.Popen([sys.executable, *launcher, *cmd_args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc: subprocess.Popen, ok: bool = True) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def run_in_process(script: str, *args: str) -> subprocess.CompletedProcess:
    """A script run in this process (runpy), so torch is imported once: for runs that
    stop before training, or evaluate or sample a tiny model."""
    stdout, stderr = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", [script, *args]):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            status = e.code
    return subprocess.CompletedProcess([script, *args], status, stdout.getvalue(), stderr.getvalue())


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def ckpts(out_dir) -> list[str]:
    return sorted(f for f in os.listdir(out_dir) if not f.startswith("."))


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
