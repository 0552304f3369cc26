"""Metadata filters (jaxpapers.text.metadata) on hand-written records."""

import pytest

from jaxpapers.text import metadata


@pytest.mark.parametrize("categories, substring, prefix", [
    ("math.AG", True, True), ("cs.LG stat.ML", True, True), ("hep-th", True, True),
    ("physics.optics", True, False),  # "physics" contains "cs": the authors' filter lets it through
    ("math-ph", True, False), ("q-bio.NC", False, False), ("astro-ph.GA", False, False),
    ("stat.ME", False, False), ("stat.TH", True, True), ("quant-ph cond-mat", True, True),
])
def test_category_matches(categories, substring, prefix):
  assert metadata.category_allowed(categories, "substring") is substring
  assert metadata.category_allowed(categories, "prefix") is prefix


def test_year_parser():
  assert metadata.first_year([{"created": "Mon, 2 Apr 2007 19:18:42 GMT"}, {"created": "1990"}]) == 2007
  assert metadata.first_year([{"created": "Fri, 13 Jan 1995"}]) == 1995
  assert metadata.first_year([{"created": "no year 1895"}]) is None
  assert metadata.first_year([]) is None and metadata.first_year(None) is None


def _record(**changes):
  r = {"id": "1", "categories": "cs.LG", "abstract": " ".join(["word"] * 20),
       "versions": [{"created": "Mon, 2 Apr 2007"}], "comments": "5 pages"}
  r.update(changes)
  return r


def test_filter_reasons_in_order():
  assert metadata.filter_record(_record()) is None
  assert metadata.filter_record(_record(categories="q-bio.NC", abstract="short")) == "blocked_category"
  assert metadata.filter_record(_record(abstract=" ".join(["w"] * 19))) == "short_abstract"
  assert metadata.filter_record(_record(versions=[{"created": "Mon, 2 Apr 1994"}])) == "too_old"
  assert metadata.filter_record(_record(comments="This paper has been WITHDRAWN")) == "withdrawn"
  assert metadata.filter_record(_record(categories="physics.optics"), "substring") is None
  assert metadata.filter_record(_record(categories="physics.optics"), "prefix") == "blocked_category"
