"""Tests for plot_curve.py: it reads the evaluation records of a training run's
log.jsonl and draws them; a log without any is a one-line error."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG = "".join(json.dumps(record) + "\n" for record in [
    {"iter": 0, "val": {"mag": 1.0256, "total": 4.3532, "acc_exact": 0.016, "acc_structure": 0.0, "acc_values": 0.016},
     "minutes": 0.01},
    {"iter": 0, "loss": 5.1772, "lr": 1.96e-05, "ms_per_iter": 1161.0, "data_wait": 0.008, "mag": 0.9923},
    {"iter": 250, "val": {"mag": 0.0014, "total": 0.2352, "acc_exact": 0.32, "acc_structure": 0.305, "acc_values": 1.0},
     "minutes": 2.77},
])


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "plot_curve.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_reads_the_evaluation_lines(tmp_path):
    sys.path.insert(0, ROOT)
    log = tmp_path / "train.log"
    log.write_text(LOG)
    from plot_curve import read_curve
    assert read_curve(str(log)) == {"iter": [0.0, 250.0], "exact": [0.016, 0.32], "structure": [0.0, 0.305],
                                    "values": [0.016, 1.0], "minutes": [0.01, 2.77]}


def test_draws_a_png(tmp_path):
    log, out = tmp_path / "train.log", tmp_path / "curve.png"
    log.write_text(LOG)
    result = run(f"--log={log}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_log_without_evaluations_is_one_line(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(json.dumps({"iter": 0, "loss": 5.1, "mag": 1.0}) + "\n")
    result = run(f"--log={log}")
    assert result.returncode == 1 and result.stderr.strip() == f"error: {str(log)!r} has no evaluation lines of train_predictor.py"
    assert run().stderr.strip().startswith("error: give --log=")
