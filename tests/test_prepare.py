"""data/prepare.py: a local text file becomes train.bin / val.bin of uint16 GPT-2 tokens,
written whole or not at all. Runs in this process (runpy), but for the full disk."""
import contextlib
import io
import os
import resource
import runpy
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import tiktoken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREPARE = os.path.join(ROOT, "data", "prepare.py")
TEXT = "".join(f"Line {i}: 12.5 * {i} = {12.5 * i}\n" for i in range(20))


def prepare(*args: str) -> tuple[int, str]:
    """prepare.py in this process -> (exit status, stderr)."""
    stderr = io.StringIO()
    status = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr), \
            mock.patch.object(sys, "argv", [PREPARE, *args]):
        try:
            runpy.run_path(PREPARE, run_name="__main__")
        except SystemExit as e:
            status = e.code
    return status, stderr.getvalue()


def test_text_becomes_train_and_val_tokens(tmp_path):
    (tmp_path / "notes.txt").write_text(TEXT)
    status, stderr = prepare(f"--input_file={tmp_path / 'notes.txt'}", "--name=notes", f"--data_dir={tmp_path}",
                             "--val_fraction=0.25")
    assert status == 0, stderr
    enc = tiktoken.get_encoding("gpt2")
    parts = [enc.decode(np.fromfile(tmp_path / "notes" / f"{s}.bin", dtype=np.uint16).tolist())
             for s in ("train", "val")]
    assert "".join(parts) == TEXT
    assert parts[1] == "".join(TEXT.splitlines(keepends=True)[15:])  # the last quarter, from a line break
    assert sorted(os.listdir(tmp_path)) == ["notes", "notes.txt"]  # no temp folder left


def test_a_million_line_breaks_in_a_row_encode(tmp_path):
    """tiktoken panics on such a run of whitespace in one piece; encoded in parts it works."""
    text = "start\n" + "\n" * 10 ** 6 + TEXT
    (tmp_path / "gaps.txt").write_text(text)
    status, stderr = prepare(f"--input_file={tmp_path / 'gaps.txt'}", "--name=gaps", f"--data_dir={tmp_path}")
    assert status == 0, stderr
    enc = tiktoken.get_encoding("gpt2")
    assert "".join(enc.decode(np.fromfile(tmp_path / "gaps" / f"{s}.bin", dtype=np.uint16).tolist())
                   for s in ("train", "val")) == text


@pytest.mark.parametrize("args, message", [
    (["--name=../up"], "name must be letters, digits, '_' or '-'"),
    (["--name=x", "--val_fraction=1.0"], "val_fraction must be in (0, 1), got 1.0"),
    (["--name=x", "--input_file=/no/such.txt"], "cannot read input_file='/no/such.txt'"),
    (["--name=x", "--input_file=TINY"], "split of"),
    (["--name=x", "--input_file=TEXT", "--data_dir=FILE"], "cannot write 'FILE/x': 'FILE' is not a directory"),
    (["--name=x", "--input_file=TEXT", "--data_dir=FILE/data"], "cannot write 'FILE/data/x': Not a directory"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    (tmp_path / "tiny.txt").write_text("a")
    (tmp_path / "text.txt").write_text(TEXT)
    (tmp_path / "file").write_text("a regular file")
    paths = {"TINY": tmp_path / "tiny.txt", "TEXT": tmp_path / "text.txt", "FILE": tmp_path / "file"}
    for key, path in paths.items():
        args, message = [a.replace(key, str(path)) for a in args], message.replace(key, str(path))
    if not any(a.startswith("--data_dir=") for a in args):
        args.append(f"--data_dir={tmp_path}")
    status, stderr = prepare(*args)
    assert status == 1 and stderr.count("\n") == 1 and stderr.startswith("error: ") and message in stderr, stderr
    assert sorted(os.listdir(tmp_path)) == ["file", "text.txt", "tiny.txt"]  # nothing half written


def test_an_existing_corpus_is_kept(tmp_path):
    (tmp_path / "notes.txt").write_text(TEXT)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "train.bin").write_bytes(b"old")
    status, stderr = prepare(f"--input_file={tmp_path / 'notes.txt'}", "--name=notes", f"--data_dir={tmp_path}")
    assert (status, stderr) == (1, f"error: {str(tmp_path / 'notes')!r} already exists and is kept as it is: give "
                                   f"another --name, or remove it first\n")
    assert os.listdir(tmp_path / "notes") == ["train.bin"] and (tmp_path / "notes" / "train.bin").read_bytes() == b"old"


def test_full_disk_leaves_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text(TEXT * 200)

    def limit():  # files may not grow past 10 kB, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, PREPARE, f"--input_file={tmp_path / 'notes.txt'}", "--name=notes",
                           f"--data_dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          preexec_fn=limit)
    assert done.returncode == 1
    assert done.stderr == f"error: cannot write {str(tmp_path / 'notes')!r}: File too large; nothing was written\n"
    assert os.listdir(tmp_path) == ["notes.txt"]
