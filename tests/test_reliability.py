"""The scripts under faults, end to end on a tiny model: a second run in the same
out_dir, an out_dir that cannot be written, a full disk at save time, odd files in
out_dir, bad settings of every script, resumes and warm starts that would change the
model's shape, checkpoints that are corrupt, have non-finite weights or miss keys, a
corpus too short for a row, an empty --expr, language models whose block cannot hold
every held-out question, and sampling at any temperature and top_k."""
import json
import os
import resource
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from models.dag_model import GPT, GPTConfig
from run.checkpoint import CHECKSUM_KEY, save_checkpoint
from run.text_generation import generate
from tests.script_runs import finish as finish_run, run_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "train_predictor.py")
TRAIN, SAMPLE, EVALUATE = (os.path.join(ROOT, f) for f in ("train.py", "sample.py", "evaluate.py"))
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
    outs = {name: copy(base, tmp_path / name) for name in ("shape", "other shape", "keys", "nan", "optimizer")}
    raw = torch.load(outs["optimizer"] / "ckpt_00000002.pt", weights_only=True)
    raw["optimizer"]["state"][0]["exp_avg"].view(torch.uint8).view(-1)[5] ^= 16  # one bit, under the old sha256
    torch.save(raw, outs["optimizer"] / "ckpt_00000002.pt")
    # the other faults as a writer without checksums would leave them
    raw = torch.load(outs["other shape"] / "ckpt_00000002.pt", weights_only=True)
    raw["model_args"]["bias"] = True  # a model with biases: the weights lack them
    torch.save({k: v for k, v in raw.items() if k != CHECKSUM_KEY}, outs["other shape"] / "ckpt_00000002.pt")
    raw = torch.load(outs["keys"] / "ckpt_00000002.pt", weights_only=True)
    del raw["optimizer"]
    torch.save({k: v for k, v in raw.items() if k != CHECKSUM_KEY}, outs["keys"] / "ckpt_00000002.pt")
    raw = torch.load(outs["nan"] / "ckpt_00000002.pt", weights_only=True)
    next(iter(raw["model"].values()))[0] = float("nan")
    torch.save({k: v for k, v in raw.items() if k != CHECKSUM_KEY}, outs["nan"] / "ckpt_00000002.pt")
    (tmp_path / "file").write_text("x")
    runs = {
        "shape": launch(f"--out_dir={outs['shape']}", "--init_from=resume", "--max_iters=4", "--n_layer=3"),
        "other shape": launch(f"--out_dir={outs['other shape']}", "--init_from=resume", "--max_iters=4"),
        "keys": launch(f"--out_dir={outs['keys']}", "--init_from=resume", "--max_iters=4"),
        "nan": launch(f"--out_dir={outs['nan']}", "--init_from=resume", "--max_iters=4"),
        "optimizer": launch(f"--out_dir={outs['optimizer']}", "--init_from=resume", "--max_iters=4"),
        "unwritable": launch(f"--out_dir={tmp_path / 'file' / 'out'}", "--max_iters=4"),
    }
    results = {name: finish(proc) for name, proc in runs.items()}
    one_line_error(results["shape"], "error: n_layer=3 differs from the checkpoint's n_layer=1")
    one_line_error(results["other shape"], "does not fit the model its model_args describe")
    one_line_error(results["keys"], "cannot be resumed: it has no optimizer")
    one_line_error(results["nan"], "has a non-finite model weight")
    one_line_error(results["optimizer"], "is corrupt: its contents do not match the sha256 saved with them")
    one_line_error(results["unwritable"], f"error: out_dir {str(tmp_path / 'file' / 'out')!r} cannot be written "
                                          f"(Not a directory)")
    # nothing was trained or saved
    for name in ("shape", "other shape", "keys", "nan", "optimizer"):
        assert files(outs[name]) == [".lock", "ckpt_00000002.pt"]


TRAIN_TINY = [a.replace("--block_size=32", "--block_size=64") for a in TINY]
SEED_45 = "--seed=" + "9" * 45


@pytest.mark.parametrize("script, arg, message", [
    (SCRIPT, "--grad_clip=-1.0", "error: grad_clip must be >= 0, got -1.0"),
    (SCRIPT, "--n_head=3", "error: n_embd=32 must be a multiple of n_head=3"),
    (SCRIPT, "--block_size=4", "error: block_size=4 is too small for expressions of depth 1"),
    (SCRIPT, "--max_expr_depth=3", "error: max_expr_depth=3 needs dag_depth >= 4"),
    (SCRIPT, "--value_head=foo", "error: value_head must be one of 'digits', 'copy', got 'foo'"),
    (TRAIN, "--device=foo", "error: device must be 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'foo'"),
    (TRAIN, SEED_45, "error: seed must be an integer in 0..9223372036854775807"),
    # the expressions fit, but not every text that asks and answers one
    (TRAIN, "--block_size=24", "error: block_size=24 is too small for the texts of depth 2"),
    (SAMPLE, SEED_45, "error: seed must be an integer in 0..9223372036854775807"),
    (SAMPLE, "--device=foo", "error: device must be 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'foo'"),
    (SAMPLE, "--max_new_tokens=1000000000", "error: max_new_tokens must be an integer in 1..10000"),
    (SAMPLE, "--temperature=-1.0", "error: temperature must be >= 0, got -1.0"),
    (EVALUATE, SEED_45, "error: seed must be an integer in 0..9223372036854775807"),
    (EVALUATE, "--device=foo", "error: device must be 'cpu', 'cuda', 'cuda:<n>' or 'mps', got 'foo'"),
    (EVALUATE, "--json_out=/no/such/dir/eval.json", "error: cannot write json_out='/no/such/dir/eval.json': "
                                                    "'/no/such/dir' is not a writable directory"),
])
def test_bad_setting_stops_before_anything_runs(tmp_path, script, arg, message):
    # in this process: each script checks its settings before it reads or writes anything
    tiny = {SCRIPT: TINY, TRAIN: TRAIN_TINY}.get(script, [])
    result = run_in_process(script, *tiny, f"--out_dir={tmp_path / 'out'}", arg)
    assert one_line_error(result).startswith(message)
    assert not (tmp_path / "out").exists()


def test_train_refuses_a_bad_start_or_corpus_before_training(base, tmp_path):
    predictor = base / "ckpt_00000002.pt"
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    raw = torch.load(predictor, weights_only=True)
    save_checkpoint(raw | {"model_args": raw["model_args"] | {"foo": 1}}, str(tmp_path / "unknown"), 2)
    np.arange(10, dtype=np.uint16).tofile(tmp_path / "train.bin")
    np.arange(100, dtype=np.uint16).tofile(tmp_path / "val.bin")
    cases = [(["--init_from=" + str(tmp_path / "plain.pt")],
              f"error: {str(tmp_path / 'plain.pt')!r} cannot start a language model: it has no model, model_args, "
              f"iter_num"),
             ([f"--init_from={tmp_path / 'unknown' / 'ckpt_00000002.pt'}"],
              "does not fit a language model of its shape: GPTConfig.__init__() got an unexpected keyword argument "
              "'foo'"),
             # a warm start keeps the predictor's shape, as a resume does
             ([f"--init_from={predictor}", "--n_layer=2"], "error: n_layer=2 differs from the checkpoint's n_layer=1"),
             ([f"--corpus={tmp_path}", "--corpus_ratio=0.05"],
              f"error: corpus file {str(tmp_path / 'train.bin')!r} has 10 tokens, fewer than the 65 of one row")]
    for i, (args, message) in enumerate(cases):
        result = run_in_process(TRAIN, *TRAIN_TINY, f"--out_dir={tmp_path / str(i)}", *args)
        assert message in one_line_error(result)
        assert files(tmp_path / str(i)) == [".lock"]  # nothing trained or saved


def lm_checkpoint(out_dir, block_size: int = 64, dag_depth: int = 3, **drop) -> str:
    """An untrained train.py checkpoint of a tiny model (expression depths 0..2)."""
    torch.manual_seed(0)
    args = dict(block_size=block_size, vocab_size=50304, n_layer=1, n_head=2, n_embd=32, dag_depth=dag_depth,
                value_head="copy")
    checkpoint = {"kind": "lm", "model": GPT(GPTConfig(**args)).state_dict(), "model_args": args, "iter_num": 1,
                  "config": {"max_expr_depth": 2, "seed": 1337}}
    return save_checkpoint({k: v for k, v in checkpoint.items() if k not in drop}, str(out_dir), 1)


def test_lm_checkpoints_without_iter_num_or_config_are_one_line(tmp_path):
    for key in ("iter_num", "config"):
        path = lm_checkpoint(tmp_path / key, **{key: True})
        for script in (SAMPLE, EVALUATE):
            message = f"error: {path!r} is not a whole train.py checkpoint: it has no {key}"
            assert one_line_error(run_in_process(script, f"--ckpt_path={path}")) == message


def test_evaluate_scores_held_out_questions_longer_than_the_block_as_wrong(tmp_path):
    """A model trained with block_size=24 cannot be asked every held-out question (asked
    and answered, some are longer): they count, as wrong, and are reported."""
    path = lm_checkpoint(tmp_path, block_size=24, dag_depth=0)  # a plain GPT: quicker to answer
    result = run_in_process(EVALUATE, f"--ckpt_path={path}", "--n_per_depth=2", f"--json_out={tmp_path / 'e.json'}")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    every = json.loads((tmp_path / "e.json").read_text())["all"]
    assert every["n"] == 6 and 0 < every["unfit"] < 6
    assert every["answer_exact"] <= (6 - every["unfit"]) / 6
    assert f"{every['unfit']} of 6 questions, answered, are longer than block_size=24: scored as wrong" \
        in result.stdout


class Favours:
    """A stand-in model whose next-token logits favour the given ids (counts its calls)."""

    config = SimpleNamespace(block_size=8, dag_depth=0)

    def __init__(self, ids, logit: float = 100.0):
        self.ids, self.logit, self.calls = list(ids), logit, 0

    def __call__(self, idx, literals=None):
        self.calls += 1
        logits = torch.zeros(1, 1, 50304)
        logits[..., self.ids] = self.logit
        return SimpleNamespace(logits=logits)


def test_sampling_never_draws_padding_and_takes_any_temperature():
    prompt = torch.tensor([[464]])
    torch.manual_seed(0)
    padding = Favours(range(50257, 50304))  # ids that are no GPT-2 token
    assert all(t < 50257 for t in generate(padding, prompt, 20, temperature=1.0, top_k=50304))
    assert all(t < 50257 for t in generate(padding, prompt, 3, temperature=0))
    # a tiny temperature is greedy, not inf / inf
    for temperature in (1e-45, 5e-324):
        assert list(generate(Favours([13], logit=1.0), prompt, 3, temperature)) == [13] * 3
        assert set(generate(Favours([11, 13]), prompt, 20, temperature, top_k=5)) <= {11, 13}
    # tokens come as they are made, and a sample stops after <|endoftext|>
    endless = Favours([50256])
    tokens = generate(endless, prompt, 10 ** 9, temperature=0.8, stop=(50256,))
    assert next(tokens) == 50256 and endless.calls == 1 and list(tokens) == []

def test_evaluate_refuses_non_finite_weights_and_an_empty_expr(base, tmp_path):
    raw = torch.load(base / "ckpt_00000002.pt", weights_only=True)
    raw["model"] = {k: v.clone() for k, v in raw["model"].items()}
    next(iter(raw["model"].values()))[0] = float("inf")
    path = tmp_path / "ckpt_00000002.pt"
    torch.save({k: v for k, v in raw.items() if k != CHECKSUM_KEY}, path)
    for args, needle in [((f"--ckpt_path={path}",), "has a non-finite model weight"),
                         ((f"--out_dir={base}", "--expr="), "error: --expr is empty"),
                         ((f"--out_dir={base}", "--expressions_file= "), "error: --expressions_file is empty")]:
        assert needle in one_line_error(run_in_process(EVALUATE, *args))
