"""data/prepare.py: a local text file becomes train.bin / val.bin of uint16 GPT-2 tokens."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tiktoken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREPARE = os.path.join(ROOT, "data", "prepare.py")
TEXT = "".join(f"Line {i}: 12.5 * {i} = {12.5 * i}\n" for i in range(20))


def prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, PREPARE, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_text_becomes_train_and_val_tokens(tmp_path):
    (tmp_path / "notes.txt").write_text(TEXT)
    done = prepare(f"--input_file={tmp_path / 'notes.txt'}", "--name=notes", f"--data_dir={tmp_path}",
                   "--val_fraction=0.25")
    assert done.returncode == 0, done.stderr
    enc = tiktoken.get_encoding("gpt2")
    parts = [enc.decode(np.fromfile(tmp_path / "notes" / f"{s}.bin", dtype=np.uint16).tolist())
             for s in ("train", "val")]
    assert "".join(parts) == TEXT
    assert parts[1] == "".join(TEXT.splitlines(keepends=True)[15:])  # the last quarter, from a line break


@pytest.mark.parametrize("args, message", [
    (["--name=../up"], "name must be letters, digits, '_' or '-'"),
    (["--name=x", "--val_fraction=1.0"], "val_fraction must be in (0, 1), got 1.0"),
    (["--name=x", "--input_file=/no/such.txt"], "cannot read input_file='/no/such.txt'"),
    (["--name=x", "--input_file=TINY"], "split of"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "tiny.txt").write_text("a")
    args = [a.replace("TINY", str(tmp_path / "tiny.txt")) for a in args]
    done = prepare(*args, f"--data_dir={tmp_path}")
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()  # nothing half written
