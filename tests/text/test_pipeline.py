"""The pipeline (jaxpapers.text.latex) on the 50-record synthetic arXiv: exact counters, outputs."""

import hashlib

import pytest

from jaxpapers.data.synth_arxiv import DEFECTS, synth_arxiv
from jaxpapers.text import dedup, language, latex


def _sources(corpus):
  return [latex.bytes_source(r.get("id"), r, lambda p=r.get("id"): corpus.sources.get(p)) for r in corpus.records]


@pytest.fixture(scope="module")
def corpus():
  return synth_arxiv(50, seed=3)


@pytest.mark.parametrize("match", ["prefix", "substring"])
def test_counters_equal_the_injected_defects(corpus, match):
  res = latex.run_pipeline(_sources(corpus), latex.PipelineConfig(match=match, validation_every=10))
  expected = corpus.expected(match)
  assert {k: res.stats[k] for k in expected} == expected
  # counted by hand from the generator's own labels, not from expected()
  n_defect = {d: corpus.defects.count(d) for d in DEFECTS}
  assert res.stats["duplicate"] == n_defect["duplicate"] and res.stats["incorrect_tar_path"] == n_defect["corrupt_archive"]
  assert res.stats["blocked_category"] == n_defect["blocked_category"] + (n_defect["physics_only"] if match == "prefix" else 0)
  assert res.stats["written"] == len(res.train) + len(res.validation)
  assert len(res.validation) == res.stats["written"] // 10
  assert sum(res.stats[k] for k in latex.LOSSES) + res.stats["written"] == res.stats["records"]


def test_outputs(corpus):
  res = latex.run_pipeline(_sources(corpus))
  docs = res.train + res.validation
  assert all(latex.violations(d.text) == [] for d in docs)
  assert len({hashlib.md5(d.text.encode()).hexdigest() for d in docs}) == len(docs)
  by_id = {d.id: d.text for d in docs}
  for pid, fragments in corpus.math.items():
    if pid in by_id:
      assert all(f in by_id[pid] for f in fragments)
  assert any("\\%" in t for t in by_id.values())


def test_violations_detects_each_break():
  good = "Title: T\nAbstract: A\nBody: x 5\\% \\\\ y"
  assert latex.violations(good) == []
  assert latex.violations("Title: T\nAbstract: A\nBody: a\nb") == ["newline"]
  assert latex.violations("Abstract: A\nBody: a") == ["format", "newline"]  # one newline only
  assert latex.violations(good + " \\cite{k} 5% \\\\%") == ["\\cite{", "unescaped %"]


def test_split_and_dedup():
  s = dedup.Splitter(100)
  assert [i for i in range(1, 301) if s.split() == "validation"] == [100, 200, 300]
  d = dedup.Deduplicator()
  assert [d.is_duplicate(t) for t in ("a", "b", "a", "a ")] == [False, False, True, False]


def test_a_failing_source_is_counted_not_raised():
  def boom(config):
    raise RuntimeError("bug")
  unreadable = latex.Source("x", None, lambda c: (_ for _ in ()).throw(OSError("perm")))
  res = latex.run_pipeline([latex.Source("b", None, boom), unreadable, latex.Source("", None, boom)])
  assert (res.stats["failed"], res.stats["download_failed"], res.stats["incorrect_id"]) == (1, 1, 1)


def test_language():
  assert language.detect_language("We show that the bound of the operator is tight for all $n$ in the set.") == "en"
  assert language.detect_language("Nous montrons que la borne est optimale pour les opérateurs dans le cas.") == "fr"
  assert language.detect_language("Wir zeigen, dass die Schranke für den Operator und die Gruppe nicht gilt.") == "de"
  assert language.detect_language("$x$ $y$ 123") == "unknown"
