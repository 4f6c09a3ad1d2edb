"""Experiment tracking besides the records: TensorBoard event files (``logger=tensorboard``).

<sweep>/tensorboard/<cell key>/   one run per trained network, written as it trains (after each
                                  epoch's checkpoint): train/loss, train/top1, val/top1, val/top5 (more
                                  than 5 classes), val/loss and lr at every evaluation; the global
                                  step is the optimiser step (the history's ``step``)
<sweep>/tensorboard/summary/      at the end of a sweep: top1/<label>, the mean top-1 of each
                                  treatment label against n (step = n; base at 0), and the console
                                  summary as text

Probe cells train no network: they get no run of their own, only their label's line in the
summary. history.csv (every evaluation of every network) is analysis.write_table's, written
for every sweep whatever ``logger`` says.

Every event file appears whole: it is written in a folder outside the logdir, fsynced and
renamed in, so a crash never leaves a truncated one, and no writer stays open between epochs.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from .config import ConfigError
from .log import get

log = get(__name__)

FOLDER = "tensorboard"        # the logdir: tensorboard --logdir <sweep>/tensorboard
SUMMARY = "summary"
TMP = ".tensorboard-tmp"      # beside the logdir, so TensorBoard never sees a half-written run
INSTALL = "pip install 'transferlab[tensorboard]'"
# history entry key -> scalar tag (a key a network's history lacks, val_top5 with <= 5 classes, is skipped)
SCALARS = {"train_loss": "train/loss", "train_top1": "train/top1", "val_top1": "val/top1",
           "val_top5": "val/top5", "val_loss": "val/loss", "lr": "lr"}
_SEQ = itertools.count()      # orders the event files of one process (several may share a second)


def enabled(cfg) -> bool:
    return cfg.get("logger", "none") == "tensorboard"


def summary_writer_class():
    """torch's SummaryWriter; an ImportError when the tensorboard package is not installed."""
    import tensorboard  # noqa: F401  torch.utils.tensorboard needs it, and says so only when imported
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def check(cfg) -> None:
    """logger=tensorboard needs the tensorboard package: refused before anything is trained."""
    if not enabled(cfg):
        return
    try:
        summary_writer_class()
    except ImportError as e:
        raise ConfigError(f"logger=tensorboard needs the tensorboard package: {INSTALL} "
                          f"(or logger=none; importing it failed: {e})") from None


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_events(root: Path, folder: Path, write) -> None:
    """``write(writer)`` into one new event file of ``folder``: written under ``root``/TMP by a
    SummaryWriter that is closed here, fsynced, then renamed in under a name that sorts after
    the folder's earlier files (TensorBoard reads a run's files in name order)."""
    tmp = root / TMP / uuid.uuid4().hex
    try:
        writer = summary_writer_class()(str(tmp))
        try:
            write(writer)
        finally:
            writer.close()
        folder.mkdir(parents=True, exist_ok=True)
        for f in sorted(tmp.iterdir()):
            _fsync(f)
            stamp = f"{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_SEQ):08d}"
            os.replace(f, folder / f"events.out.tfevents.{stamp}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _add_scalars(writer, entries: list[dict]) -> None:
    for h in entries:
        for key, tag in SCALARS.items():
            if h.get(key) is not None:
                writer.add_scalar(tag, float(h[key]), global_step=int(h["step"]))


class NetworkEvents:
    """One network's run. Each call writes the history entries this object has not written yet.
    Its first call rewrites the run from the whole history: a resumed network's history starts
    with its checkpointed evaluations, and the events of an earlier attempt (cut short, or
    failed and now retried from scratch) go, so no step is ever there twice."""

    def __init__(self, root: Path, key: str):
        self.root, self.folder = Path(root), Path(root) / FOLDER / key
        self.written: int | None = None  # entries written; None: none yet by this object

    def wrap(self, on_epoch_end):
        """train()'s on_epoch_end: ``on_epoch_end`` (the checkpoint) first, so the events never
        run ahead of what a resume restores, then the new evaluations."""
        def hook(state: dict) -> None:
            on_epoch_end(state)
            self.write(state["history"])
        return hook

    def write(self, history: list[dict]) -> None:
        if self.written is None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.written = 0
        new = history[self.written:]
        if new:
            _write_events(self.root, self.folder, lambda w: _add_scalars(w, new))
            self.written = len(history)


class _NoEvents:
    """logger=none, and probe cells: nothing is written."""

    def wrap(self, on_epoch_end):
        return on_epoch_end

    def write(self, history: list[dict]) -> None:
        pass


def network_events(cfg, root, cell) -> NetworkEvents | _NoEvents:
    """The events of a trained network (logger=tensorboard), else an object that writes nothing.
    It needs only the config and the sweep folder: it works wherever run_cell runs (a worker
    process, a Slurm job)."""
    if not enabled(cfg) or cell.probe:
        return _NoEvents()
    return NetworkEvents(Path(root), cell.key)


def summary_means(df):
    """Mean top-1 of each treatment label at each n (the networks with a final accuracy, less
    the collapsed ones, as in the tables): columns label, n, val_top1."""
    d = df[df.collapsed.isna() & df.val_top1.notna()]
    return d.groupby(["label", "n"], as_index=False).val_top1.mean()


def finish(cfg, root, df, summary: str) -> list[Path]:
    """The end of a sweep: the TensorBoard summary (logger=tensorboard) from ``df`` (analysis.load,
    so networks of earlier runs count too) and ``summary`` (the console's table); returns the
    folders written. The new summary is written beside the old one and swapped in."""
    if not enabled(cfg) or df.empty:
        return []
    root = Path(root)
    means = summary_means(df)
    # Indented: markdown's preformatted block, so TensorBoard shows the table as the console does.
    text = "\n".join(f"    {line}" for line in summary.splitlines())

    def write(w) -> None:
        for r in means.itertuples():
            w.add_scalar(f"top1/{r.label}", float(r.val_top1), global_step=int(r.n))
        w.add_text("summary", text, global_step=0)

    path, tag = root / FOLDER / SUMMARY, uuid.uuid4().hex
    new, old = root / TMP / f"{SUMMARY}-{tag}", root / TMP / f"{SUMMARY}-old-{tag}"  # outside the logdir
    _write_events(root, new, write)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)
    log.info(f"wrote {path}")
    return [path]
