"""`jaxpapers reproduce games --preset smoke` (spec 4.2) passes and writes its report."""

import json

from jaxpapers.experiments.games.run import EXPERIMENT
from jaxpapers.core import experiment as experiment_lib


def test_smoke_reproduction_passes(tmp_path):
  record = experiment_lib.reproduce(EXPERIMENT, "smoke", tmp_path)
  assert record["passed"], [c for c in record["claims"] if not c["passed"]]
  measured = {c["id"]: c["measured"] for c in record["claims"]}
  assert abs(measured["smoke_vad_500_uniform"] - 11 / 24) < 1e-12   # uniform until the warm start ends
  assert measured["smoke_vad_600"] < 1e-9
  assert abs(measured["smoke_cfr_plus_600"] - 8.385e-5) < 1e-8     # OpenSpiel-exact (spec 4.2)
  assert abs(measured["smoke_dcfr_600"] - 3.526e-4) < 1e-7
  assert json.loads((tmp_path / "games" / "report.json").read_text()) == record
  assert (tmp_path / "games" / "cfr_curves.png").read_bytes()[:4] == b"\x89PNG"
