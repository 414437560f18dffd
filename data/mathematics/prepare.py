"""
DeepMind's Mathematics Dataset (Saxton et al. 2019), arithmetic modules, drawn by the
dataset's own generator: text files of `question<TAB>answer` lines in
data/mathematics/<split>/<module>.txt, split one of train-easy, train-medium,
train-hard (the six interpolation modules only, as the dataset trains), interpolate,
extrapolate.

$ python data/mathematics/prepare.py                       # all 12 modules, defaults below
$ python data/mathematics/prepare.py --verify=True --per_train_module=60 --per_test_module=50

The generator is the PyPI package mathematics_dataset==1.0.1, which needs
sympy==1.5.1 (later SymPy dropped what it imports) while the project stays on current
SymPy. So it runs in a private virtual environment, made once with `python -m venv`
and pip under venv_dir (default $XDG_CACHE_HOME/nanogpt-dag/, outside the repository),
in a subprocess: draw.py, which calls the package's own `generate` module (its
modules, entropies, length filter and order; see draw.py for the streams and seeds).
--verify=True shows that the questions are the package's own: it runs the package's
generate.py (test splits) and generate_to_file.py (train splits) themselves, seeded
alike, with the same flags, and compares their output with draw.py's, file by file.

Counts follow the package's flags: each train split gets per_train_module // 3
questions, each test split per_test_module. Defaults: 10,000 per test module, as the
released dataset and the paper; 30,000 per train module (the released dataset has 2
million): 7 minutes on one CPU core for all of it.
"""
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from itertools import groupby
from pathlib import Path
from typing import Iterator, NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # run as a script

INTERPOLATION_MODULES = ("arithmetic__add_or_sub", "arithmetic__add_sub_multiple", "arithmetic__mul", "arithmetic__div",
                         "arithmetic__mul_div_multiple", "arithmetic__mixed")
EXTRAPOLATION_MODULES = ("arithmetic__add_or_sub_big", "arithmetic__mul_big", "arithmetic__div_big",
                         "arithmetic__add_sub_multiple_longer", "arithmetic__mul_div_multiple_longer",
                         "arithmetic__mixed_longer")
TRAIN_SPLITS = ("train-easy", "train-medium", "train-hard")
TEST_SPLITS = ("interpolate", "extrapolate")
REQUIREMENTS = ("mathematics_dataset==1.0.1", "sympy==1.5.1", "absl-py", "numpy", "six")
DRAW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "draw.py")
# the package never seeds its generators: seed them as draw.py does (after the imports),
# then run one of the package's scripts as `python -m` would
SEEDED_SCRIPT = """import random, runpy, sys
import numpy
import mathematics_dataset.modules.modules
seed, sys.argv = int(sys.argv[1]), sys.argv[2:]
random.seed(seed)
numpy.random.seed(seed)
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""
_HEADER = re.compile("\x1b\\[1m(.+)/(.+)\x1b\\[0m")  # generate.py's bold "regime/module" line


class Problem(NamedTuple):
    """One drawn question, as the package writes it."""

    split: str
    module: str
    question: str
    answer: str


def stream_seed(seed: int, stream: str, module: str) -> int:
    """The seed of one module's "train" or "test" stream: independent of the counts and
    of the other modules, so a test set stays the same however much training data is drawn."""
    return zlib.crc32(f"{seed}/{stream}/{module}".encode())


def split_path(out_dir: str, split: str, module: str) -> str:
    """Where the questions of one split and module are written."""
    return os.path.join(out_dir, split, f"{module}.txt")


def module_splits(module: str) -> tuple[str, ...]:
    """The splits the dataset draws a module in."""
    return (*TRAIN_SPLITS, "interpolate") if module in INTERPOLATION_MODULES else ("extrapolate",)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def ensure_venv(venv_dir: str, find_links: str) -> str:
    """The generator environment's python, made first if venv_dir has none (a finished
    one holds requirements.txt, written last); ValueError when venv or pip fails."""
    python = os.path.join(venv_dir, "bin", "python")
    done = os.path.join(venv_dir, "requirements.txt")
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if os.path.isfile(done) and Path(done).read_text() == wanted:
        return python
    if os.path.isdir(venv_dir) and os.listdir(venv_dir) and not os.path.isfile(os.path.join(venv_dir, "pyvenv.cfg")):
        raise ValueError(f"venv_dir {venv_dir!r} is a folder with files and no virtual environment: give a new "
                         f"or empty folder")  # venv --clear would delete them
    made = subprocess.run([sys.executable, "-m", "venv", "--clear", venv_dir], capture_output=True, text=True)
    if made.returncode != 0:
        raise ValueError(f"cannot make the generator's environment with `{Path(sys.executable).name} -m venv "
                         f"{venv_dir}` ({_last_line(made.stderr + made.stdout)}): install venv support "
                         f"(Debian/Ubuntu: apt install python3-venv) or give another venv_dir")
    links = ["--find-links", find_links] if find_links else []
    pip = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *links,
                          *REQUIREMENTS], capture_output=True, text=True)
    if pip.returncode != 0:
        raise ValueError(f"pip could not install {' '.join(REQUIREMENTS)} into {venv_dir}: "
                         f"{_last_line(pip.stderr + pip.stdout)}")
    Path(done).write_text(wanted)
    return python


def draw(python: str, modules: tuple[str, ...], seed: int, per_train_module: int,
         per_test_module: int) -> Iterator[Problem]:
    """The modules' questions, drawn by draw.py in the generator's environment: the train
    stream of each interpolation module, then the test stream of each module, each in a
    process of its own (see draw.py); ValueError if one fails."""
    streams = [("train", m) for m in modules if m in INTERPOLATION_MODULES] + [("test", m) for m in modules]
    # PYTHONHASHSEED: nothing drawn should depend on set order, but then it cannot
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for stream, module in streams:
        command = [python, DRAW, f"--stream={stream}", f"--module={module}",
                   f"--seed={stream_seed(seed, stream, module)}", f"--per_train_module={per_train_module}",
                   f"--per_test_module={per_test_module}"]
        with tempfile.TemporaryFile("w+") as errors:
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env) as proc:
                for line in proc.stdout:
                    yield Problem(*line.rstrip("\n").split("\t"))
            if proc.returncode != 0:
                errors.seek(0)
                raise ValueError(f"the generator failed (draw.py, {stream} stream of {module}, exit "
                                 f"{proc.returncode}): {_last_line(errors.read())}")


def write_atomically(path: str, problems: list[Problem]) -> None:
    """Write `question<TAB>answer` lines to path through a temporary file, so a reader
    never sees half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{p.question}\t{p.answer}\n" for p in problems)
    os.replace(tmp, path)


def prepare(python: str, out_dir: str, modules: tuple[str, ...], seed: int, per_train_module: int,
            per_test_module: int) -> None:
    """Draw and write every file of the modules, printing each file's count and time."""
    start = last = time.perf_counter()
    for (split, module), group in groupby(draw(python, modules, seed, per_train_module, per_test_module),
                                          key=lambda p: (p.split, p.module)):
        problems = list(group)
        path = split_path(out_dir, split, module)
        write_atomically(path, problems)
        now = time.perf_counter()
        print(f"{path}: {len(problems):,} questions in {now - last:.1f} s")
        last = now
    print(f"prepared {len(modules)} modules in {time.perf_counter() - start:.1f} s")


def printed(question: str, answer: str) -> str:
    """A problem as generate.py prints it: answer in green after two spaces, wrapped at 80
    columns (a long expression is broken inside, so the printout cannot be unwrapped
    unambiguously: ours is wrapped instead, and the texts compared)."""
    wrapper = textwrap.TextWrapper(width=80, initial_indent=" ", subsequent_indent="  ")
    return wrapper.fill(f"{question}  \x1b[92m{answer}\x1b[0m")


def parse_generate_output(text: str) -> dict[tuple[str, str], list[str]]:
    """generate.py's printout as {(regime, module): [printed problem, ...]}: a bold header
    per module, then each problem's lines (continuation lines indented by two spaces)."""
    blocks: dict[tuple[str, str], list[str]] = {}
    entries: list[str] = []
    for line in text.splitlines():
        header = _HEADER.fullmatch(line)
        if header:
            entries = blocks.setdefault((header[1], header[2]), [])
        elif line.startswith("  "):
            entries[-1] += "\n" + line
        elif line.strip():
            entries.append(line)
    return blocks


def _run_package(python: str, seed: int, script: str, *flags: str) -> str:
    done = subprocess.run([python, "-c", SEEDED_SCRIPT, str(seed), script, *flags], capture_output=True,
                          text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        raise ValueError(f"the package's {script} failed: {_last_line(done.stderr)}")
    return done.stdout


def package_problems(python: str, module: str, seed: int, per_train_module: int,
                     per_test_module: int) -> dict[str, list[str]]:
    """{split: [problem, ...]} of one module as the package's own scripts draw it, seeded
    as draw.py seeds its streams: generate.py prints the test split (each problem as
    `printed`), generate_to_file.py writes the train splits (each problem as its
    question and answer lines)."""
    out: dict[str, list[str]] = {}
    printed = parse_generate_output(_run_package(
        python, stream_seed(seed, "test", module), "mathematics_dataset.generate", f"--filter={module}",
        "--per_train_module=0", f"--per_test_module={per_test_module}"))
    split = module_splits(module)[-1]
    out[split] = printed[(split, module)]
    if module in INTERPOLATION_MODULES:
        with tempfile.TemporaryDirectory() as tmp:
            _run_package(python, stream_seed(seed, "train", module), "mathematics_dataset.generate_to_file",
                         f"--filter={module}", f"--per_train_module={per_train_module}", "--per_test_module=0",
                         f"--output_dir={tmp}/out")
            for split in TRAIN_SPLITS:
                lines = Path(tmp, "out", split, f"{module}.txt").read_text().splitlines()
                out[split] = [f"{q}\n{a}" for q, a in zip(lines[::2], lines[1::2])]
    return out


def verify(python: str, modules: tuple[str, ...], seed: int, per_train_module: int, per_test_module: int) -> int:
    """Compare draw.py's questions with the package's scripts' for every file; print one
    line per file and return how many differ."""
    ours: dict[tuple[str, str], list[str]] = {}
    for p in draw(python, modules, seed, per_train_module, per_test_module):
        text = f"{p.question}\n{p.answer}" if p.split in TRAIN_SPLITS else printed(p.question, p.answer)
        ours.setdefault((p.split, p.module), []).append(text)
    differ = 0
    for module in modules:
        start = time.perf_counter()
        theirs = package_problems(python, module, seed, per_train_module, per_test_module)
        seconds = time.perf_counter() - start
        for split in module_splits(module):
            mine = ours.get((split, module), [])
            same = mine == theirs[split]
            differ += not same
            print(f"{split}/{module}: {len(mine)} questions, {len(theirs[split])} from the package "
                  f"({seconds:.1f} s): {'equal' if same else 'NOT equal'}")
    return differ


def main() -> None:
    from errors import fail
    from configurator import apply_config

    config = {
        "out_dir": os.path.dirname(os.path.abspath(__file__)),  # <out_dir>/<split>/<module>.txt
        "modules": ",".join(INTERPOLATION_MODULES + EXTRAPOLATION_MODULES),  # comma-separated
        "per_train_module": 30_000,  # per_train_module // 3 per train split, as the package's flag
        "per_test_module": 10_000,
        "seed": 0,
        "venv_dir": os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "nanogpt-dag",
                                 "mathematics_dataset-1.0.1-venv"),
        "find_links": "",  # a folder of wheels for pip (--find-links), e.g. for an offline machine
        "verify": False,  # compare with the package's own scripts instead of writing files
    }
    apply_config(config, sys.argv[1:])
    modules = tuple(m.strip() for m in config["modules"].split(",") if m.strip())
    known = INTERPOLATION_MODULES + EXTRAPOLATION_MODULES
    for m in modules:
        if m not in known:
            fail(f"unknown module {m!r}: the modules in scope are {', '.join(known)}")
    if not modules:
        fail("modules is empty: give one or more of " + ", ".join(known))
    for key in ("per_train_module", "per_test_module", "seed"):
        if config[key] < 0:
            fail(f"{key} must be >= 0, got {config[key]}")
    counts = (config["seed"], config["per_train_module"], config["per_test_module"])
    try:
        start = time.perf_counter()
        python = ensure_venv(config["venv_dir"], config["find_links"])
        print(f"generator environment: {config['venv_dir']} ({time.perf_counter() - start:.1f} s)")
        if config["verify"]:
            differ = verify(python, modules, *counts)
            if differ:
                fail(f"{differ} files differ from the package's own output")
            print("every file equals the package's own output")
        else:
            prepare(python, config["out_dir"], modules, *counts)
    except (ValueError, OSError) as e:
        fail(e)


if __name__ == "__main__":
    main()
