"""Executes every jupytext notebook under notebooks/ (a failing cell fails the test)."""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.md"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXPAPERS_FIGURES", str(tmp_path / "figures"))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  notebook = jupytext.read(path)
  client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                   resources={"metadata": {"path": str(path.parents[1])}})
  client.execute()
  figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
  assert figures, "the notebook saved no figure"
  saved = sum("".join(cell.source).count('save(fig, "') for cell in notebook.cells
              if cell.cell_type == "code")
  assert len(figures) == saved  # every figure the notebook draws is saved
