"""run/common.py: the run plumbing shared by the training scripts."""
import json
import time

import pytest

from run.train_loop import StepTimer


def test_step_timer_adds_each_part_and_skips_what_is_no_part(tmp_path):
    timer = StepTimer()
    for _ in range(2):
        time.sleep(0.02)
        timer.mark("data")
        time.sleep(0.01)
        timer.mark("forward")
        timer.steps += 1
        time.sleep(0.05)  # logging: no part
        timer.skip()
    ms = timer.ms_per_step()
    assert list(ms) == ["data", "forward", "total"]
    assert ms["data"] >= 20 and ms["forward"] >= 10  # sleeps last at least their time
    assert ms["total"] == pytest.approx(ms["data"] + ms["forward"])
    timer.write_json(tmp_path / "t.json")
    assert json.loads((tmp_path / "t.json").read_text()) == {"steps": 2, "ms_per_step": ms}
    timer.reset()
    assert timer.ms_per_step() == {"total": 0.0}
