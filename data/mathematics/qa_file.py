"""Files of `question<TAB>answer` lines, the Mathematics Dataset's own strings, as
prepare.py writes them and as `evaluate.py --qa_file` reads them (one path or a glob).

Every line is checked when the file is read: exactly one tab, a question and an answer
that are not empty, and an answer in the dataset's format (answers.read_benchmark_answer).
A bad line is a ValueError naming file:line, so nothing is evaluated or trained on a
file with one.
"""
import glob
import os
from typing import NamedTuple

from data.mathematics.answers import read_benchmark_answer


class QA(NamedTuple):
    """One line of a file: its question and answer strings, and its line number."""

    question: str
    answer: str
    line: int


def read_qa(path: str) -> list[QA]:
    """The lines of a question<TAB>answer file; ValueError naming the file, or file:line
    and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path!r}: {e}") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}:{number}: expected question<TAB>answer, both non-empty, got {line!r}")
        try:
            read_benchmark_answer(parts[1])
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
        pairs.append(QA(parts[0], parts[1], number))
    if not pairs:
        raise ValueError(f"{path!r} has no question<TAB>answer lines")
    return pairs


def qa_paths(pattern: str) -> list[str]:
    """The files a path or a glob names, sorted; ValueError when there are none."""
    if glob.has_magic(pattern):
        paths = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
        if not paths:
            raise ValueError(f"no file matches {pattern!r}")
        return paths
    if not os.path.isfile(pattern):
        raise ValueError(f"{pattern!r} is not a file")
    return [pattern]


def file_labels(paths: list[str]) -> list[str]:
    """A short name per file: its module (the file name without .txt), or
    split/module when two files share a module name (or one is named "all", the
    label of all files together)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(stems)) == len(stems) and "all" not in stems:
        return stems
    return [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(p))), s) for p, s in zip(paths, stems)]
