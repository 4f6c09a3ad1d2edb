"""What --help and --cfg print, and a reader that leaves early (`... | head -1`): no traceback."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from ..log import silence


def silence_stdout() -> None:
    silence(sys.stdout)


def emit(text: str) -> bool:
    """print() what the user asked for; False when the reader has left (`... | head -1`)."""
    try:
        print(text, flush=True)
        return True
    except BrokenPipeError:
        silence_stdout()
        return False


def run_quietly(main: Callable[[], int | None]) -> NoReturn:
    """sys.exit(main()), where a reader that left early (`... | head -1`) ends it silently:
    Python's recipe (stdout onto devnull, exit status 1)."""
    try:
        try:
            code = main()
        except SystemExit as e:  # argparse's --help: flush here, where a closed pipe is caught
            code = e.code
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
        code = 1
    sys.exit(code)


def _text(v) -> str:
    """A value as an override writes it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return "[" + ",".join(_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_text(x)}" for k, x in v.items()) + "}"
    return str(v)
