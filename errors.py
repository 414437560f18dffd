"""One-line errors: every script stops on bad input with one line on stderr and a
non-zero exit status, also for library messages that span several lines."""
import sys
from typing import NoReturn


def one_line(text) -> str:
    return " ".join(str(text).split())


def fail(message, prefix: str = "error", status: int = 1) -> NoReturn:
    print(f"{prefix}: {one_line(message)}", file=sys.stderr)
    sys.exit(status)
