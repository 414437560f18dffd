"""End-to-end tests of the full model's scripts on a tiny model: train.py (both kinds,
resume, DDP, warm start from a predictor, a corpus mix, bad input), sample.py and
evaluate.py on its checkpoints."""
import json
import os
import re

import numpy as np
import pytest
import torch

from models.dag_model import GPT, GPTConfig
from data.dagset.text_format import gpt2_encoding
from tests.script_runs import ROOT, assert_one_line_error, assert_same_tensors, ckpts, finish, launch_script, load

TRAIN, SAMPLE, EVALUATE = (os.path.join(ROOT, f) for f in ("train.py", "sample.py", "evaluate.py"))
CONFIG = os.path.join(ROOT, "config", "train_daggpt.py")
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=64", "--batch_size=4", "--dag_depth=3",
        "--max_expr_depth=2", "--num_workers=0", "--eval_iters=1", "--log_interval=1", "--eval_interval=2",
        "--max_iters=4", "--lr_decay_iters=4", "--warmup_iters=1"]


def train(*args: str, ok: bool = True, launcher=()):
    return finish(launch_script([TRAIN, CONFIG, *TINY, *args], launcher=launcher), ok)


def run(script: str, *args: str, ok: bool = True):
    return finish(launch_script([script, *args]), ok)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A DAG model and a plain GPT of the same tiny shape, 4 iterations each."""
    tmp = tmp_path_factory.mktemp("lm")
    procs = [launch_script([TRAIN, CONFIG, *TINY, f"--out_dir={tmp / 'dag'}"]),
             launch_script([TRAIN, CONFIG, *TINY, f"--out_dir={tmp / 'plain'}", "--dag_depth=0"])]
    outs = [finish(p).stdout for p in procs]
    return tmp / "dag", tmp / "plain", outs


def test_both_kinds_train_and_save_lm_checkpoints(runs):
    dag, plain, (dag_out, plain_out) = runs
    for out_dir, depth in ((dag, 3), (plain, 0)):
        assert ckpts(out_dir) == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
        ckpt = load(out_dir / "ckpt_00000004.pt")
        assert ckpt["kind"] == "lm" and ckpt["model_args"]["dag_depth"] == depth
        model = GPT(GPTConfig(**ckpt["model_args"]))
        model.load_state_dict(ckpt["model"])
        assert hasattr(model, "result_copy") == (depth > 0)
    assert re.search(r"^iter 4: val loss \S+ \| lm \S+ \| final-token exact", dag_out, re.M)
    assert re.search(r"^iter 3: loss \S+ \(lm \S+ mag \S+ sign \S+ op \S+ gate \S+ exec \S+\)", dag_out, re.M)
    assert re.search(r"^iter 3: loss \S+ \(lm \S+\) lr", plain_out, re.M)


def test_same_data_for_both_kinds(runs):
    dag, plain, _ = runs
    a, b = load(dag / "ckpt_00000004.pt")["config"], load(plain / "ckpt_00000004.pt")["config"]
    assert {k: v for k, v in a.items() if k not in ("dag_depth", "out_dir")} == \
        {k: v for k, v in b.items() if k not in ("dag_depth", "out_dir")}


def test_resume_is_bit_exact(tmp_path):
    args = ["--dropout=0.1", "--gradient_accumulation_steps=2", "--num_workers=1"]
    train(f"--out_dir={tmp_path / 'whole'}", *args)
    train(f"--out_dir={tmp_path / 'split'}", "--max_iters=2", *args)
    out = train(f"--out_dir={tmp_path / 'split'}", "--init_from=resume", *args).stdout
    assert "resuming from" in out and "ckpt_00000002.pt" in out
    whole, split = load(tmp_path / "whole" / "ckpt_00000004.pt"), load(tmp_path / "split" / "ckpt_00000004.pt")
    assert_same_tensors(whole["model"], split["model"])
    assert torch.equal(whole["rng_state"], split["rng_state"])


def test_ddp_two_ranks_equal_two_micro_steps(tmp_path):
    finish(launch_script([TRAIN, CONFIG, *TINY, f"--out_dir={tmp_path / 'ddp'}", "--max_iters=2", "--backend=gloo"],
                         launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")))
    train(f"--out_dir={tmp_path / 'single'}", "--max_iters=2", "--gradient_accumulation_steps=2")
    assert_same_tensors(load(tmp_path / "ddp" / "ckpt_00000002.pt")["model"],
                        load(tmp_path / "single" / "ckpt_00000002.pt")["model"])


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    out = tmp_path_factory.mktemp("predictor")
    run(os.path.join(ROOT, "train_predictor.py"), "--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=32",
        "--batch_size=4", "--dag_depth=3", "--max_expr_depth=2", "--num_workers=0", "--eval_iters=1",
        "--max_iters=2", "--eval_interval=2", f"--out_dir={out}")
    return out / "ckpt_00000002.pt"


def test_warm_start_from_a_predictor_keeps_its_backbone_and_heads(predictor, tmp_path):
    # the config file's literal_states=True is not the predictor's: a warm start keeps its shape
    out = train(f"--out_dir={tmp_path}", f"--init_from={predictor}", "--literal_states=False", "--max_iters=1",
                "--eval_interval=1", "--learning_rate=1e-9", "--warmup_iters=0", "--decay_lr=False").stdout
    assert "warm start from the predictor" in out
    before, after = load(predictor)["model"], load(tmp_path / "ckpt_00000001.pt")["model"]
    assert set(after) - set(before) == {k for k in after if k.startswith("result_copy.")}
    for k in before:  # one step at lr 1e-9 moves nothing measurably
        if k != "transformer.wpe.weight":
            assert torch.allclose(before[k], after[k], atol=1e-6), k
    assert torch.allclose(before["transformer.wpe.weight"], after["transformer.wpe.weight"][:32], atol=1e-6)


def test_the_other_kind_of_checkpoint_is_a_one_line_error(predictor, runs):
    out_dir = predictor.parent
    assert_one_line_error(train(f"--out_dir={out_dir}", "--init_from=resume", ok=False), "'predictor' model")
    assert_one_line_error(run(SAMPLE, f"--ckpt_path={predictor}", ok=False), "not a train.py language model")
    result = run(os.path.join(ROOT, "train_predictor.py"), f"--out_dir={runs[0]}", "--init_from=resume", ok=False)
    assert_one_line_error(result, "'lm' model")


def test_corpus_mix(tmp_path):
    tokens = np.array(gpt2_encoding().encode_ordinary("A line of plain text with 2 numbers, 3.5 of them.\n" * 40),
                      dtype=np.uint16)
    for split in ("train", "val"):
        tokens.tofile(tmp_path / f"{split}.bin")
    train(f"--out_dir={tmp_path / 'out'}", f"--corpus={tmp_path}", "--corpus_ratio=0.5", "--max_iters=2")
    assert load(tmp_path / "out" / "ckpt_00000002.pt")["config"]["corpus_ratio"] == 0.5


@pytest.mark.parametrize("args, message", [
    (["--corpus=/no/such/corpus", "--corpus_ratio=0.5"], "does not exist"),
    (["--corpus_ratio=0.5"], "needs a corpus_dir"),
    (["--corpus_ratio=2.0"], "corpus_ratio must be"),
    (["--dag_depth=-1"], "dag_depth must be"),
    (["--block_size=12"], "block_size"),
])
def test_bad_settings_are_one_line_errors(tmp_path, args, message):
    assert_one_line_error(train(f"--out_dir={tmp_path}", *args, ok=False), message)


def test_unknown_key_stops_the_run(tmp_path):
    result = train(f"--out_dir={tmp_path}", "--no_such_key=1", ok=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr and "no_such_key" in result.stderr


def test_sample_continues_the_prompt(runs):
    for out_dir in runs[:2]:
        out = run(SAMPLE, f"--out_dir={out_dir}", "--start=What is 2.5 * 3 equal to?", "--temperature=0",
                  "--max_new_tokens=5").stdout
        assert "What is 2.5 * 3 equal to?" in out
        assert ("DAG heads" if out_dir == runs[0] else "plain GPT") in out
    assert_one_line_error(run(SAMPLE, f"--out_dir={runs[0]}", "--start=" + "1 + " * 80, ok=False), "block_size")
    assert_one_line_error(run(SAMPLE, f"--out_dir={runs[0]}", "--start=", ok=False), "empty")


def test_evaluate_reports_exact_answers_for_both_kinds(runs, tmp_path):
    for out_dir in runs[:2]:
        json_out = tmp_path / f"{out_dir.name}.json"
        out = run(EVALUATE, f"--out_dir={out_dir}", "--n_per_depth=2", f"--json_out={json_out}").stdout
        result = json.loads(json_out.read_text())
        assert result["all"]["n"] == 6 and 0 <= result["all"]["answer_exact"] <= 1
        assert ("dag_exact" in result["all"]) == (out_dir == runs[0])
        assert "a train.py language model" in out and "answer_exact" in out
    expressions = tmp_path / "e.txt"
    expressions.write_text("# two\n2 + 3\n\n7 / 2\n")
    out = run(EVALUATE, f"--out_dir={runs[0]}", f"--expressions_file={expressions}").stdout
    assert re.search(r"^7 / 2 .* 3\.5 +(yes|no)$", out, re.M)  # an untrained answer may hold spaces
    expressions.write_text("2 + 3\n2 +\n")
    assert_one_line_error(run(EVALUATE, f"--out_dir={runs[0]}", f"--expressions_file={expressions}", ok=False),
                          f"{expressions}:2:")
