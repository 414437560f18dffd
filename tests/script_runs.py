"""Running the repo's scripts as subprocesses in tests, and checking what they leave."""
import os
import subprocess
import sys
import signal

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
