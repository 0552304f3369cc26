"""Claims, report.json and report.md of a `jaxpapers reproduce` run.

report.json follows the schema of ARCHITECTURE.md section 3; report.md shows the claim table
and the run's PNG plots.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax


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
                 wall_seconds: float) -> dict[str, Any]:
  """The report.json record."""
  return {
      "experiment": experiment,
      "paper": paper,
      "preset": preset,
      "passed": all(c.passed for c in claims) and bool(claims),
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
