"""What a sweep says, through ``logging``: every module logs to a child of the "transferlab"
logger; ``console()`` and ``sweep_log()`` decide where it goes.

Console: INFO lines to stdout, warnings and errors to stderr; ``quiet`` shows only RESULT and
above (the summary table, warnings, errors), ``verbose`` adds DEBUG. ``sweep.log`` in the sweep
folder gets every line of every run, timestamped, appended (DEBUG too with ``verbose``).
Within an epoch, ``EpochProgress``: a tqdm bar on a terminal, and in logs a heartbeat line at
least every HEARTBEAT_S, so a long ImageNet epoch is never silent.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

ROOT = "transferlab"
RESULT = 25  # the sweep's results: shown even when quiet
logging.addLevelName(RESULT, "RESULT")
HEARTBEAT_S = 30.0  # at most this long between two lines about a network in progress, in logs
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"

logger = logging.getLogger(ROOT)


def get(name: str) -> logging.Logger:
    """The logger of a module (``get(__name__)``): a child of "transferlab"."""
    return logging.getLogger(name if name.startswith(ROOT) else f"{ROOT}.{name}")


class _Console(logging.Handler):
    """stdout (below WARNING) or stderr, looked up at every line: a test's captured streams, or
    a stream swapped after setup, get what they should. Lines go around open progress bars."""

    def __init__(self, level: int):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "heartbeat", False) and bars_shown():
            return  # the bar shows it
        stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
        try:
            text = self.format(record)
            if _open_bars:
                from tqdm import tqdm

                tqdm.write(text, file=stream)
            else:
                stream.write(text + "\n")
            stream.flush()
        except BrokenPipeError:  # `... | head`: the reader left; the sweep goes on, silently
            silence(stream)
        except Exception:  # noqa: BLE001  logging's own policy: never raise from a handler
            self.handleError(record)


def silence(stream) -> None:
    """After a BrokenPipeError: later writes to that pipe (and the flush at exit) go to devnull,
    not to a traceback."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass


_console: _Console | None = None
_open_bars = 0
_bars_lock = threading.Lock()


def console(quiet: bool = False, verbose: bool = False) -> None:
    """(Re)configure the console: quiet shows RESULT and up, verbose DEBUG and up."""
    global _console
    level = logging.DEBUG if verbose else RESULT if quiet else logging.INFO
    if _console is not None:
        logger.removeHandler(_console)
    _console = _Console(level)
    logger.addHandler(_console)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def console_level() -> int:
    return _console.level if _console is not None else logging.INFO


def bars_shown() -> bool:
    """Progress bars are drawn: the console is a terminal and shows INFO lines."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and console_level() <= logging.INFO


_file: logging.FileHandler | None = None


def start_sweep_log(folder: Path, command: str) -> Path:
    """From now on every line also goes to ``folder``/sweep.log, timestamped, after a line
    naming this run's command (several runs of one sweep append to one file)."""
    global _file
    end_sweep_log()
    path = Path(folder) / "sweep.log"
    _file = logging.FileHandler(path, mode="a", encoding="utf-8")
    _file.setFormatter(logging.Formatter(FILE_FORMAT))
    _file.setLevel(logging.DEBUG)  # what the logger lets through: DEBUG only with verbose
    logger.addHandler(_file)
    _file.handle(logging.LogRecord(ROOT, logging.INFO, __file__, 0,  # the file only: a separator of runs
                                   f"==== python -m transferlab.sweep {command}", None, None))
    return path


def end_sweep_log() -> None:
    global _file
    if _file is not None:
        logger.removeHandler(_file)
        _file.close()
        _file = None


def _position() -> int:
    """The bar's row: launcher=local's worker threads each have their own."""
    name = threading.current_thread().name
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if name.startswith("transferlab-worker") and tail.isdigit() else 0


class EpochProgress:
    """One epoch of one network: ``step(b, loss)`` after each step (``loss()`` is read only when
    shown: a device sync at most every 0.5 s), ``close()`` at the end of the epoch."""

    def __init__(self, name: str, epoch: int, epochs: int, steps: int, images_per_step: int):
        self.name, self.epoch, self.epochs, self.steps, self.B = name, epoch, epochs, steps, images_per_step
        self.t0 = self.last_line = self.last_postfix = time.monotonic()
        self.bar = None
        if bars_shown():
            global _open_bars
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"{name} epoch {epoch}/{epochs}", unit="step", leave=False,
                            position=_position(), dynamic_ncols=True, mininterval=0.5)
            with _bars_lock:
                _open_bars += 1

    def step(self, b: int, loss) -> None:
        now = time.monotonic()
        if self.bar is not None:
            self.bar.update(1)
            if now - self.last_postfix >= 0.5:
                self.bar.set_postfix(loss=f"{loss():.3f}", refresh=False)
                self.last_postfix = now
        if now - self.last_line >= HEARTBEAT_S:
            self.last_line = now
            rate = b * self.B / max(1e-9, now - self.t0)
            eta = (self.steps - b) * (now - self.t0) / b
            logger.info(f"  {self.name} epoch {self.epoch}/{self.epochs}: step {b}/{self.steps}, loss "
                        f"{loss():.3f}, {rate:.0f} img/s, epoch ETA {eta:.0f}s", extra={"heartbeat": True})

    def evaluated(self, h: dict) -> None:
        """An evaluation within the epoch (train.evals_per_epoch > 1 makes several): a debug line."""
        logger.debug(f"  {self.name} epoch {h['epoch']:.2f}: train loss {h['train_loss']:.3f}, "
                     f"val top1 {h['val_top1']:.1%}")

    def close(self) -> None:
        if self.bar is not None:
            global _open_bars
            self.bar.close()
            self.bar = None
            with _bars_lock:
                _open_bars -= 1


console()  # at import: a library call (a notebook, a test) says what it did, as print() did


def progress_for(name: str):
    """The ``progress`` argument of train.train for the network ``name``."""
    return lambda epoch, epochs, steps, images_per_step: EpochProgress(name, epoch, epochs, steps, images_per_step)
