"""jaxpapers.core.report's plots: `subplots` + `save_figure` (one style, PNG, closed), and no
experiment file switches matplotlib's backend or saves a figure itself."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from jaxpapers.core import report

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
  data = path.read_bytes()
  assert data[:8] == PNG_MAGIC
  return struct.unpack(">II", data[16:24])  # IHDR width, height


def test_save_figure_writes_a_png_in_the_house_style(tmp_path):
  fig, (ax, ax2) = report.subplots(1, 2, figsize=(4, 2))
  ax.plot([0, 1], [1, 0])
  ax2.set_title("second")
  path = report.save_figure(fig, tmp_path / "plot.png")
  assert path == tmp_path / "plot.png"
  width, height = _png_size(path)
  assert (width, height) == (4 * report.FIGURE_DPI, 2 * report.FIGURE_DPI)  # 110 dpi
  assert not fig.axes  # cleared: nothing of the figure is kept alive


def test_save_figure_closes_pyplot_figures_and_refuses_other_formats(tmp_path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # the test process only: no display here
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(2, 2))
  ax.plot([0, 1])
  assert plt.fignum_exists(fig.number)
  report.save_figure(fig, tmp_path / "pyplot.png")
  assert not plt.fignum_exists(fig.number)
  assert _png_size(tmp_path / "pyplot.png") == (220, 220)
  fig, _ = report.subplots()
  with pytest.raises(ValueError, match="PNG"):
    report.save_figure(fig, tmp_path / "plot.pdf")
  assert not (tmp_path / "plot.pdf").exists()


def test_importing_report_loads_no_pyplot():
  """pyplot picks a global backend on import; the report module must not (a notebook keeps its own)."""
  code = "import sys, jaxpapers.core.report; print('matplotlib.pyplot' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       timeout=120).stdout
  assert out.strip() == "False"


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT / "experiments")))
def test_experiments_plot_through_save_figure(path):
  source = path.read_text()
  for pattern, why in ((r"matplotlib\.use\(", "switches matplotlib's global backend"),
                       (r"\.savefig\(", "saves a figure itself"),
                       (r"import matplotlib\.pyplot|from matplotlib import pyplot", "uses pyplot")):
    match = re.search(pattern, source)
    assert match is None, (f"{path.relative_to(ROOT)} line {source[:match.start()].count(chr(10)) + 1} "
                           f"{why}: draw on jaxpapers.core.report.subplots and write with "
                           "report.save_figure")
