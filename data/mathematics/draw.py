"""Draws arithmetic questions with the Mathematics Dataset's own code; run by prepare.py.

This file runs only in the generator's private environment (mathematics_dataset==1.0.1
with sympy==1.5.1, which the project cannot import), so it imports nothing from the
project. It prints one line per question to stdout: split, module, question, answer,
separated by tabs (the package's questions and answers hold no tabs or newlines).

The package draws from Python's `random` and NumPy's global generator and never seeds
them. A module is drawn in two streams, each in a process of its own, seeded with
random.seed(s) and numpy.random.seed(s) (s: prepare.py's stream_seed) right before the
package's own loop runs. A process of its own, because the package's draws depend on
what the process drew before: after the train stream of arithmetic__mul, the test
stream of arithmetic__mixed_longer draws other questions from its 143rd on (with the
same answers). The streams:

- "test": the loop of `generate.py` (`main`: regimes train, interpolate, extrapolate;
  modules sorted by name) with --filter=MODULE --per_train_module=0
  --per_test_module=N. The module's test block is the first the loop draws, so the loop
  stops after it;
- "train": the loop of `generate_to_file.py` (regimes train-easy, train-medium,
  train-hard with per_train_module // 3 each, then interpolate, extrapolate) with
  --filter=MODULE --per_train_module=N --per_test_module=0. --filter matches names that
  contain MODULE, so `arithmetic__mul` also draws `arithmetic__mul_div_multiple` in each
  regime; those draws are made (they move the generators on) and not printed.

Every question is drawn by `generate.sample_from_module` (the package's length filter)
from `generate.filtered_modules` (the package's modules and entropies), so the lines
are the package's own: prepare.py --verify runs generate.py and generate_to_file.py
themselves with the same flags and seeds and compares.
"""
import argparse
import random

import numpy as np
from absl import flags
from mathematics_dataset import generate


def draw_stream(module: str, stream: str, seed: int, per_train_module: int, per_test_module: int) -> None:
    """Print the module's questions of one stream (see the module docstring)."""
    train = stream == "train"
    flags.FLAGS.filter = module
    flags.FLAGS.per_train_module = per_train_module if train else 0
    flags.FLAGS.per_test_module = 0 if train else per_test_module
    generate.filtered_modules.clear()  # init_modules does nothing once they are filled
    generate.counts.clear()
    generate.init_modules(train_split=train)
    wanted = [regime for regime, flat in generate.filtered_modules.items()
              if module in flat and generate.counts[regime] > 0 and regime.startswith("train") == train]
    if not wanted:
        return
    random.seed(seed)
    np.random.seed(seed)
    for regime, flat in generate.filtered_modules.items():
        for name, module_fn in flat.items():
            for _ in range(generate.counts[regime]):
                problem, _ = generate.sample_from_module(module_fn)
                if name == module:
                    print(f"{regime}\t{name}\t{problem.question}\t{problem.answer}")
            if name == module and regime == wanted[-1]:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_train_module", type=int, required=True)
    parser.add_argument("--per_test_module", type=int, required=True)
    parser.add_argument("--stream", choices=("train", "test"), required=True)
    parser.add_argument("--module", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args()
    flags.FLAGS(["draw"])  # the package reads FLAGS (show_dropped); draw_stream sets the values
    draw_stream(args.module, args.stream, args.seed, args.per_train_module, args.per_test_module)


if __name__ == "__main__":
    main()
