"""`jaxpapers reproduce games --preset smoke` (CI protocol): the Kuhn values against OpenSpiel.

The registry-parametrized smoke test (tests/test_house_rules.py) checks that every claim passed
and the report; this test reads the same run (`smoke_report`) for the paper's exact values.
"""


def test_smoke_values_match_openspiel_and_the_warm_start(smoke_report):
  run = smoke_report("games")
  measured = {c["id"]: c["measured"] for c in run.record["claims"]}
  assert abs(measured["smoke_vad_500_uniform"] - 11 / 24) < 1e-12   # uniform until the warm start ends
  assert measured["smoke_vad_600"] < 1e-9
  assert abs(measured["smoke_cfr_plus_600"] - 8.385e-5) < 1e-8     # OpenSpiel-exact
  assert abs(measured["smoke_dcfr_600"] - 3.526e-4) < 1e-7
  assert (run.folder / "cfr_curves.png").read_bytes()[:4] == b"\x89PNG"
