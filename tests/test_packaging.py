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
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry).decode()
    for script in ("transferlab-sweep", "transferlab-analysis", "transferlab-bench"):
        assert script in scripts, script
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run from an unrelated directory with only the unpacked wheel on the path.
    out = subprocess.run(
        [sys.executable, "-c", "import transferlab.config as c; print(c.config_dir()); c.compose(['n=2'])"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == site / "transferlab" / "configs"


def _requirement_names(reqs) -> set[str]:
    import re

    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def test_every_third_party_import_is_a_declared_dependency():
    """An import of a package that only arrives as someone else's dependency breaks the day that
    dependency drops it: every third-party module the package imports is declared (submitit in
    its extra)."""
    import ast
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"]) | _requirement_names(
        r for extra in project["optional-dependencies"].values() for r in extra)
    dists = packages_distributions()
    missing = {}
    for path in (ROOT / "src" / "transferlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "transferlab":
                    continue
                owners = {d.lower() for d in dists.get(top, [top])}
                if not owners & declared:
                    missing.setdefault(top, set()).add(path.name)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_analysis_imports_without_fcntl():
    """fcntl does not exist on Windows; notebook users there must still load and analyse results."""
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import transferlab.analysis, transferlab.store\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]
