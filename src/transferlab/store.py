"""Where a sweep's files live, and writing them so a crash never leaves half a file.

results/<sweep>/
  sweep.json                 the config that defines the sweep (guards against mixing recipes)
  splits.json                each task's classes, names and indices
  cells/<key>/record.json    one record per cell (status done or failed)
  cells/<key>/model.pt       its weights (a state_dict; loaded with weights_only=True)
  cells.csv                  a tidy table of every finished cell
  figures/                   figure2.png / .pdf and tables
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from pathlib import Path

import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: Path) -> dict:
    """Load tensors only: checkpoints are untrusted files, never unpickled as objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


class SweepStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def record_path(self, key: str) -> Path:
        return self.cell_dir(key) / "record.json"

    def model_path(self, key: str) -> Path:
        return self.cell_dir(key) / "model.pt"

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
            print(f"warning: {path} is corrupted ({e}); the cell will be trained again", flush=True)
            return None

    def is_done(self, key: str, need_model: bool = False) -> bool:
        rec = self.read_record(key)
        ok = rec is not None and rec["status"] == "done"
        return ok and (not need_model or self.model_path(key).exists())

    def records(self) -> list[dict]:
        out = []
        for path in sorted((self.root / "cells").glob("*/record.json")):
            rec = self.read_record(path.parent.name)
            if rec is not None:
                out.append(rec)
        return out

    @contextlib.contextmanager
    def lock(self, key: str):
        """An exclusive lock per cell, so concurrent workers never train the same one twice."""
        path = self.cell_dir(key) / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
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
