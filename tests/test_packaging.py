"""The configs travel inside the wheel, so a non-editable install works from any directory."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_configs_and_runs_from_elsewhere(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {build.stderr[-300:]}")
    wheel = next(tmp_path.glob("transferlab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for group in ("data", "model", "split", "train", "launcher"):
        assert any(n.startswith(f"transferlab/configs/{group}/") for n in names), group
    assert "transferlab/configs/config.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run from an unrelated directory with only the unpacked wheel on the path.
    out = subprocess.run(
        [sys.executable, "-c", "import transferlab.config as c; print(c.config_dir()); c.compose(['n=2'])"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == site / "transferlab" / "configs"
