"""Trinity RSDB study: smoke claims and plausible DomTV values."""

import json

import numpy as np
import pytest

from jaxpapers.experiments.trinity import rsdb_study


@pytest.fixture(scope="module")
def smoke():
  return rsdb_study.rsdb_claims("smoke")


def test_smoke_claims_pass(smoke):
  claims, results = smoke
  ids = [c.id for c in claims]
  assert all("rsdb" in i for i in ids) and len(set(ids)) == len(ids) == 4
  failed = [c for c in claims if not c.passed]
  assert not failed, failed
  ratio = next(c for c in claims if c.id == "rsdb_domtv_ratio")
  assert ratio.threshold == "<= 0.6"
  domtv = results["domtv"]
  assert ratio.measured == pytest.approx(domtv["rsdb_64_128"] / domtv["sequential"])
  cons = results["conservation"]
  assert cons["emitted"] == cons["tokens"] > 0 and cons["violations"] == 0
  json.dumps(results)  # the report can store it


def test_smoke_domtv_values_are_plausible(smoke):
  _, results = smoke
  domtv = results["domtv"]
  assert set(domtv) == {"sequential", "rsdb_16_32", "rsdb_64_128", "rsdb_256_512"}
  assert 0.5 < domtv["sequential"] < 0.95  # our calibration: 0.76
  for name in ("rsdb_16_32", "rsdb_64_128", "rsdb_256_512"):  # our calibration: 0.35, 0.27, 0.25
    assert 0.15 < domtv[name] < 0.45, (name, domtv[name])
  # Multinomial floor: 16 rows from random documents cannot beat ~0.26 on average by much.
  assert domtv["rsdb_256_512"] > 0.18
  assert all(len(c) == 50 for c in results["curves"].values())
  assert results["rows"] == 4 * 50 * 16 == results["full_rows"]


def test_plot_rsdb_writes_a_png(smoke, tmp_path):
  _, results = smoke
  path = rsdb_study.plot_rsdb(tmp_path / "rsdb.png", results)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_unknown_preset_is_rejected():
  with pytest.raises(ValueError, match="preset"):
    rsdb_study.rsdb_claims("huge")


def test_domtv_curve_matches_the_metric_definition():
  stream = rsdb_study.MarkovDocuments(rsdb_study.markov_domains(), length_mean=6.0)
  batch = next(rsdb_study.SequentialPacker(stream, 16, 256))
  shares = np.bincount(batch["domains"].ravel(), minlength=8) / batch["domains"].size
  assert rsdb_study.domain_tv(batch["domains"], stream.mix) == pytest.approx(
      0.5 * np.abs(shares - 1 / 8).sum())
