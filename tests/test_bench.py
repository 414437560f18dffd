"""bench.py runs end to end and writes the JSON keys the performance issue names (the
figures themselves are not asserted: they depend on the machine)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_writes_its_json(tmp_path):
    out = tmp_path / "bench.json"
    # the training step timed on a one-layer model without data workers: what is checked is
    # that every part is measured and written, not how fast the default config trains
    cmd = [sys.executable, os.path.join(ROOT, "bench.py"), "--seconds=0.05", "--train_iters=2", f"--json_out={out}",
           "--train_args=--n_layer=1 --n_head=2 --n_embd=32 --num_workers=0"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    for key in ("data_examples_per_s", "data_examples_per_s_2_workers", "data_examples_per_s_gpu_config",
                "executor_dags_per_s", "executor_dags_per_s_B64_T32_D8", "executor_dags_per_s_torch",
                "executor_dags_per_s_1_thread", "train_iters_per_s", "train_ms_data", "train_ms_forward",
                "train_ms_executor", "train_ms_losses", "train_ms_backward", "train_ms_optimizer"):
        assert figures[key] > 0, key
    parts = sum(figures[f"train_ms_{k}"] for k in ("data", "forward", "executor", "losses", "backward", "optimizer"))
    assert figures["train_ms_total"] == pytest.approx(parts)
    assert 0 <= figures["train_data_wait_fraction"] < 1
    assert figures["executor_dags_per_s"] == figures["executor_dags_per_s_B256_T32_D4"]
    assert "executor fwd+bwd float64 (C kernel), B=256 T=32 D=4" in result.stdout


def test_bench_rejects_an_unknown_key():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), "--secs=1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: unknown key 'secs' (from --secs=1)"


def test_bench_rejects_a_baseline_that_is_not_a_commit():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), "--baseline=no-such-rev"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: baseline='no-such-rev' is not a commit of this repository"
