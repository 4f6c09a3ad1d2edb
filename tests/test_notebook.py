"""notebooks/analysis.ipynb runs top to bottom: on a sweep folder, and on the shipped original data."""
from pathlib import Path

import nbformat
import pytest
from fake_sweep import FT, make_sweep

nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"


def run_notebook(tmp_path, results=None):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert tagged == code[:1], "the first code cell, and only it, is tagged parameters (papermill)"
    assert "RESULTS = None" in nb.cells[tagged[0]].source, "the parameters cell sets RESULTS"
    if results is not None:  # as papermill -p RESULTS ... does: a cell of new values right after it
        nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(f"RESULTS = {[str(r) for r in results]!r}"))
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=180,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    texts = "\n".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    return images, texts


def test_notebook_draws_a_sweep(tmp_path):
    runs = [make_sweep(tmp_path / "rand", treatments=FT + ("random",)),
            make_sweep(tmp_path / "dis", split="dissimilar", treatments=("transfer",))]
    images, texts = run_notebook(tmp_path, runs)
    assert len(images) == 4                       # learning curves, Figure 2, Figure 3, the decomposition
    assert "1-3" in texts and "3-3" in texts       # Table 1 of a 4-layer net
    assert "co-adaptation" in texts and "dissimilar" in texts


def test_notebook_defaults_to_the_original_study(tmp_path):
    images, texts = run_notebook(tmp_path)
    assert len(images) == 4                       # the learning curves panel says there are none
    assert "original study's networks" in texts
    assert "5-7" in texts and "2.1" in texts and "1.7" in texts
