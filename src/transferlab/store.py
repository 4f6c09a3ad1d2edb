"""Where a sweep's files live, and writing them so a crash never leaves half a file.

results/<sweep>/
  sweep.json                 the config that defines the sweep (guards against mixing recipes)
  splits.json                each task's classes, names and indices
  cells/<key>/record.json    one record per cell (status done or failed)
  cells/<key>/model.pt       its weights (a state_dict; loaded with weights_only=True)
  cells/<key>/checkpoint.pt  while it trains: the state at the end of the last epoch (resume)
  cells/<key>/attempts       how many times its training was started
  cells/<key>/.lock          held (flock; msvcrt on Windows) by the worker training it
  cells.csv                  a tidy table of every finished cell
  figures/                   figure2.png / .pdf and tables
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

from .log import get

log = get(__name__)


def timestamp() -> str:
    """The one timestamp format of records, jobs.json and the bench: local time with its UTC
    offset, ISO 8601 (2026-12-02T18:56:26+0000)."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results from the lab's group
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def atomic_torch_save(path: Path, state: dict) -> None:
    import io

    import torch  # here, not at the top: analysis reads records without torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path) -> dict:
    """Load tensors only: checkpoints are untrusted files, never unpickled as objects."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class SweepStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._verified: dict = {}   # model.pt (path, mtime, size) -> sha256 matches its record
        self._reported: set = set()  # corrupted files already reported by this process

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def record_path(self, key: str) -> Path:
        return self.cell_dir(key) / "record.json"

    def model_path(self, key: str) -> Path:
        return self.cell_dir(key) / "model.pt"

    def checkpoint_path(self, key: str) -> Path:
        return self.cell_dir(key) / "checkpoint.pt"

    def report(self, path: Path, problem: str) -> None:
        """Say once per process that a file is corrupted and will be recomputed."""
        try:
            stamp = (str(path), path.stat().st_mtime_ns)
        except OSError:
            stamp = (str(path), None)
        if stamp not in self._reported:
            self._reported.add(stamp)
            log.warning(f"warning: {path} is corrupted ({problem}); it will be recomputed")

    def read_record(self, key: str) -> dict | None:
        """The cell's record, or None if there is none or it is unreadable (then it is redone)."""
        path = self.record_path(key)
        if not path.exists():
            return None
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict) or "status" not in rec:
                raise ValueError("not a record")
            return rec
        except (ValueError, UnicodeDecodeError) as e:
            self.report(path, str(e))
            return None

    def is_done(self, key: str, need_model: bool = False) -> bool:
        """A finished record; with ``need_model`` also its weights, intact (sha256 as recorded)."""
        rec = self.read_record(key)
        ok = rec is not None and rec["status"] == "done"
        return ok and (not need_model or self.model_ok(key, rec))

    def model_ok(self, key: str, rec: dict) -> bool:
        path = self.model_path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        want = rec.get("model_sha256")
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if want is None or self._verified.get(stamp) == want:
            return True
        if file_sha256(path) != want:
            self.report(path, "sha256 differs from its record")
            return False
        self._verified[stamp] = want
        return True

    def records(self) -> list[dict]:
        out = []
        for path in sorted((self.root / "cells").glob("*/record.json")):
            rec = self.read_record(path.parent.name)
            if rec is not None:
                out.append(rec)
        return out

    @contextlib.contextmanager
    def lock(self, key: str, blocking: bool = True):
        """An exclusive lock per cell, so concurrent workers never train the same one twice.
        Yields whether it was taken (always, when blocking). The kernel releases it when the
        holder dies, so a killed worker never leaves a cell locked."""
        path = self.cell_dir(key) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            if not _lock(f, blocking):
                yield False
                return
            try:
                yield True
            finally:
                _unlock(f)

    def start_attempt(self, key: str) -> int:
        """Count one more start of the cell's training (call holding its lock); returns the count.
        Also removes temporary files a killed writer left behind."""
        for tmp in self.cell_dir(key).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        path = self.cell_dir(key) / "attempts"
        try:
            n = int(path.read_text())
        except (FileNotFoundError, ValueError):
            n = 0
        atomic_write_bytes(path, f"{n + 1}\n".encode())
        return n + 1


def _lock(f, blocking: bool) -> bool:
    """An exclusive lock on an open file: True when held, False when another process holds it
    (only when not ``blocking``). fcntl is imported here, not at the top: it does not exist on
    Windows, where the analysis (which imports this module) must still work."""
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock on the first byte
        import msvcrt
        import time

        while True:
            try:
                f.seek(0)  # the lock covers a byte range from the file position
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
                return True
            except OSError:
                if not blocking:
                    return False
                time.sleep(0.5)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def _unlock(f) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def check_writable(root: Path) -> None:
    """Fail early, before any training, if results cannot be written under ``root``."""
    from .config import ConfigError

    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".write-test.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "permission denied" if e.errno != errno.EROFS else "read-only file system"
        raise ConfigError(f"results directory {root} is not writable ({reason}); "
                          f"set results_dir=<a writable folder>") from None
