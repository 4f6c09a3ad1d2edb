"""What a sweep says: logging to the console (quiet / verbose), sweep.log in its folder,
a progress bar within epochs on a terminal and a heartbeat line in logs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny

from transferlab import log as logs
from transferlab import sweep

# 3 networks (baseA, baseB, A1B), 2 epochs, 2 evaluations an epoch; no figures (seconds saved).
RUN = tiny("n=1", "treatments=[transfer]", "train.epochs=2", "train.evals_per_epoch=2", "analyze=false",
           "launcher.workers=1")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|DEBUG|RESULT|WARNING|ERROR) ")


def run(tmp_path, capsys, *extra):
    rc = sweep.main(RUN + [f"results_dir={tmp_path}", *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_every_run_appends_its_lines_timestamped_to_sweep_log(tmp_path, capsys):
    rc, out, _ = run(tmp_path, capsys)
    assert rc == 0
    path = tmp_path / "synthetic-random" / "sweep.log"
    first = path.read_text().splitlines()
    assert first[0].endswith("==== python -m transferlab.sweep " + " ".join(RUN + [f"results_dir={tmp_path}"]))
    assert all(STAMP.match(line) for line in first if "training on task" in line or "epoch 2/2 loss" in line)
    for line in ("[1/3] baseA (random0_s0_baseA): training on task A", "A1B epoch 2/2 loss",
                 "sweep finished in", "3 trained, 0 skipped, 0 failed"):
        assert line in path.read_text(), line
        assert line in out  # the console says the same
    rc, _, _ = run(tmp_path, capsys)  # the same command again: appended, not replaced
    text = path.read_text()
    assert text.count("==== python -m transferlab.sweep") == 2 and text.startswith("\n".join(first))
    assert "0 trained, 3 skipped" in text
    assert "====" not in out  # the separator is the file's alone


def test_a_dry_run_and_a_refused_config_write_no_sweep_log(tmp_path, capsys):
    rc, out, _ = run(tmp_path, capsys, "dry_run=true")
    assert rc == 0 and "plan:" in out
    rc, _, err = run(tmp_path, capsys, "train.lr=-1")
    assert rc == 2 and "error:" in err
    assert not list(tmp_path.rglob("sweep.log"))


def test_quiet_shows_the_results_and_warnings_only_and_the_log_keeps_everything(tmp_path, capsys):
    rc, out, _ = run(tmp_path, capsys, "quiet=true", "analyze=true")
    assert rc == 0
    assert "training on task" not in out and "epoch 1/2" not in out and "wrote" not in out
    assert "| AnB |" in out  # the summary table ends every sweep, quiet or not
    assert "sweep finished in" in out
    text = (tmp_path / "synthetic-random" / "sweep.log").read_text()
    assert "training on task" in text and "A1B epoch 2/2" in text and "| AnB |" in text
    assert " DEBUG " not in text


def test_verbose_adds_every_evaluation(tmp_path, capsys):
    rc, out, _ = run(tmp_path, capsys)
    assert rc == 0 and "epoch 0.50: train loss" not in out
    rc, out, _ = run(tmp_path, capsys, "verbose=true", "name=v")
    assert rc == 0
    assert "baseA epoch 0.50: train loss" in out and "A1B epoch 1.50: train loss" in out
    assert " DEBUG     baseA epoch 0.50" in (tmp_path / "v" / "sweep.log").read_text()
    logs.console()  # what the next test expects


def test_a_line_at_least_every_heartbeat_within_an_epoch_in_logs(tmp_path, capsys, monkeypatch):
    """Not on a terminal (a log file, a Slurm job): within an epoch a line per HEARTBEAT_S; here 0 s,
    so one after every step: 'epoch 1/2: step k/N, loss, img/s, epoch ETA'."""
    rc, out, _ = run(tmp_path, capsys)
    assert "step 1/" not in out
    monkeypatch.setattr(logs, "HEARTBEAT_S", 0.0)
    rc, out, _ = run(tmp_path, capsys, "name=h")
    assert rc == 0
    steps = re.findall(r"  baseA epoch 1/2: step (\d+)/(\d+), loss \d+\.\d+, \d+ img/s, epoch ETA \d+s", out)
    assert steps and [int(s) for s, _ in steps] == list(range(1, int(steps[0][1]) + 1))
    assert "baseA epoch 1/2: step 1/" in (tmp_path / "h" / "sweep.log").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pseudo-terminal (pty) as a terminal")
def test_on_a_terminal_a_progress_bar_within_epochs(tmp_path):
    """A pseudo-terminal 120 columns wide: tqdm's bar per network and epoch; the log
    lines go around it; no heartbeat lines (the bar says it); exit 0."""
    import fcntl
    import pty
    import struct
    import termios

    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    cmd = [sys.executable, "-m", "transferlab.sweep", *RUN, "data.train_per_class=48", f"results_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, stdin=sub, stdout=sub, stderr=sub, close_fds=True,
                            env={**os.environ, "COLUMNS": "120"})
    os.close(sub)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(r"baseA epoch 1/2: +\d+%\|.*\| \d+/\d+ \[", text), text[-2000:]
    assert re.search(r"\d+/\d+ \[\d\d:\d\d<", text) and ("step/s" in text or "s/step" in text)
    assert "sweep finished in" in text and "Traceback" not in text
    assert not re.search(r"epoch 1/2: step \d+/", text)


def test_a_library_call_says_what_it_did_without_setup(tmp_path, capsys):
    """transferlab used from a notebook or a script (no CLI): lines still reach the console."""
    logs.get("transferlab.somewhere").info("hello from a module")
    assert "hello from a module" in capsys.readouterr().out


def test_the_file_handler_is_gone_after_the_run(tmp_path, capsys):
    run(tmp_path, capsys)
    logs.get("transferlab.after").info("after the sweep")
    text = (tmp_path / "synthetic-random" / "sweep.log").read_text()
    assert "after the sweep" not in text
    assert not any(isinstance(h, __import__("logging").FileHandler) for h in logs.logger.handlers)


def test_sweep_log_path_is_the_folders(tmp_path, capsys):
    run(tmp_path, capsys, "name=here")
    assert (Path(tmp_path) / "here" / "sweep.log").is_file()
