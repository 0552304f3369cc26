"""Claims, report.json, report.md and the plots of a `jaxpapers reproduce` run.

report.json follows the schema of ARCHITECTURE.md section 3; report.md shows the claim table
and the run's PNG plots, drawn on `subplots` figures and written by `save_figure` (one style for
every experiment; matplotlib's object API, so no global backend is switched).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import jax
from matplotlib.figure import Figure

# One style for every plot: PNG at this resolution, white background, tight layout.
FIGURE_DPI = 110
FIGURE_STYLE = {"dpi": FIGURE_DPI, "format": "png", "facecolor": "white"}


@dataclasses.dataclass(frozen=True)
class Claim:
  """One measured statement of a paper and whether it held."""

  id: str
  statement: str
  paper_value: float | str | None
  measured: float | str
  threshold: str
  passed: bool


def _num(x: Any) -> Any:
  return float(x) if isinstance(x, (int, float)) or hasattr(x, "dtype") else x


def reported(id: str, statement: str, measured: Any, paper_value=None) -> Claim:
  """A figure the protocol reports without gating on it (never fails the report)."""
  return Claim(id, statement, paper_value, _num(measured), "reported, not gated", True)


def at_least(id: str, statement: str, measured: float, bound: float, paper_value=None) -> Claim:
  return Claim(id, statement, paper_value, _num(measured), f">= {bound:g}", bool(measured >= bound))


def at_most(id: str, statement: str, measured: float, bound: float, paper_value=None) -> Claim:
  return Claim(id, statement, paper_value, _num(measured), f"<= {bound:g}", bool(measured <= bound))


def less_than(id: str, statement: str, measured: float, bound: float, paper_value=None) -> Claim:
  return Claim(id, statement, paper_value, _num(measured), f"< {bound:g}", bool(measured < bound))


def greater_than(id: str, statement: str, measured: float, bound: float, paper_value=None) -> Claim:
  return Claim(id, statement, paper_value, _num(measured), f"> {bound:g}", bool(measured > bound))


def within(id: str, statement: str, measured: float, low: float, high: float, paper_value=None) -> Claim:
  return Claim(id, statement, paper_value, _num(measured), f"in [{low:g}, {high:g}]",
               bool(low <= measured <= high))


def build_report(experiment: str, paper: str, preset: str, claims: list[Claim],
                 wall_seconds: float, overrides: list[str] = ()) -> dict[str, Any]:
  """The report.json record; `overrides` are the run's `key=value` strings, verbatim."""
  return {
      "experiment": experiment,
      "paper": paper,
      "preset": preset,
      "passed": all(c.passed for c in claims) and bool(claims),
      "overrides": [str(o) for o in overrides],
      "claims": [dataclasses.asdict(c) for c in claims],
      "wall_seconds": round(float(wall_seconds), 2),
      "backend": jax.default_backend(),
      "devices": jax.device_count(),
      "jax_version": jax.__version__,
  }


def _fmt(x: Any) -> str:
  """A table cell: numbers to 4 significant digits, pipes escaped."""
  if isinstance(x, float):
    return f"{x:.4g}"
  return "" if x is None else str(x).replace("|", "\\|")


def write_report(out_dir: Path, report: dict[str, Any], title: str, plots: list[Path]) -> None:
  """Writes OUT_DIR/report.json and OUT_DIR/report.md (plots are linked by file name)."""
  out_dir = Path(out_dir)
  (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
  verdict = "PASSED" if report["passed"] else "FAILED"
  lines = [
      f"# {report['experiment']}: {title}",
      "",
      f"arXiv {report['paper']} · preset `{report['preset']}` · **{verdict}** · "
      f"{report['wall_seconds']:.0f} s on {report['devices']} {report['backend']} device(s), "
      f"jax {report['jax_version']}",
      "",
      "| claim | statement | paper | measured | threshold | result |",
      "|---|---|---|---|---|---|",
  ]
  for c in report["claims"]:
    lines.append(f"| {c['id']} | {_fmt(c['statement'])} | {_fmt(c['paper_value'])} | "
                 f"{_fmt(c['measured'])} | {c['threshold']} | {'pass' if c['passed'] else 'FAIL'} |")
  lines.append("")
  for plot in plots:
    lines += [f"![{Path(plot).stem}]({Path(plot).name})", ""]
  (out_dir / "report.md").write_text("\n".join(lines))


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] = (6.4, 4.8),
             **kwargs: Any) -> tuple[Figure, Any]:
  """A new figure and its axes, like `matplotlib.pyplot.subplots`, without pyplot.

  The figure belongs to no pyplot window manager, so drawing works under any matplotlib backend
  (a notebook's inline one included) and nothing needs closing.

  Args:
    nrows: rows of axes.
    ncols: columns of axes.
    figsize: (width, height) in inches.
    **kwargs: passed on to `Figure.subplots` (`sharex`, `squeeze`, ...).

  Returns:
    (figure, axes): axes as `Figure.subplots` returns them (one Axes or an array of them).
  """
  fig = Figure(figsize=figsize)
  return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Figure, path: str | Path) -> Path:
  """Writes `fig` as a PNG in the house style (`FIGURE_STYLE`) and closes it.

  Works for `subplots` figures and for pyplot figures alike: a pyplot figure is closed through
  pyplot (so its window manager lets it go); either way the figure is cleared.

  Args:
    fig: the figure.
    path: where the PNG goes (its folder must exist); the suffix should be `.png`.

  Returns:
    `path`, as a Path.
  """
  path = Path(path)
  if path.suffix.lower() != ".png":
    raise ValueError(f"save_figure writes PNG files; got {path.name!r} (use a .png name)")
  try:
    fig.tight_layout()
    fig.savefig(path, **FIGURE_STYLE)
  finally:
    pyplot = sys.modules.get("matplotlib.pyplot")  # loaded only if someone used pyplot
    if pyplot is not None:
      pyplot.close(fig)  # a no-op for figures pyplot does not manage
    fig.clear()
  return path
