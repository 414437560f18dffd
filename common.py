"""Run plumbing shared by the training scripts, so each script's training loop is all
that is its own: timing the parts of a step."""
import json
import time

import torch


class StepTimer:
    """Wall time of each part of a training step, summed since the last reset: mark(part)
    adds the time since the previous mark to that part. With sync=True it waits for the
    GPU before each reading, so a part's time is its own rather than the time to queue
    it (and the run is slower); on a CPU every part has finished when mark() is called."""

    def __init__(self, sync: bool = False):
        self.sync = sync and torch.cuda.is_available()
        self.reset()

    def reset(self) -> None:
        self.seconds: dict[str, float] = {}
        self.steps = 0
        self.skip()

    def skip(self) -> None:
        """Start the next part now: the time since the previous mark counts nowhere."""
        if self.sync:
            torch.cuda.synchronize()
        self.last = time.perf_counter()

    def mark(self, part: str) -> None:
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - self.last
        self.last = now

    def step_done(self) -> None:
        self.steps += 1

    def ms_per_step(self) -> dict[str, float]:
        """Each part's mean milliseconds per step, and their total."""
        parts = {k: 1000.0 * v / max(1, self.steps) for k, v in self.seconds.items()}
        return parts | {"total": sum(parts.values())}

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"steps": self.steps, "ms_per_step": self.ms_per_step()}, f, indent=2)
