"""The pipeline on real TeX files: Debian's texlive-science-doc, unpacked by .ci/run (README's
test set-up). Skips, saying how to install it, where it is absent."""

import pytest

from jaxpapers.text import latex, sources

ROOT = sources.debian_tex_dir()
pytestmark = pytest.mark.skipif(
    ROOT is None, reason=f"no real TeX files: {sources.DEBIAN_TEX_PACKAGE} is not unpacked in "
    f"{sources.DEBIAN_TEX_CACHE}; install it with: {sources.DEBIAN_TEX_INSTALL}")


@pytest.fixture(scope="module")
def result():
  docs, found = sources.documents(sources.folder_inventory(ROOT, archives=False))
  return latex.run_pipeline([make(None) for make in docs.values()]), found


def test_real_tex_runs_without_crashes_and_keeps_the_invariants(result):
  res, found = result
  st = res.stats
  assert found["main_files"] >= 100 and st["records"] == found["main_files"] + found["unreadable"]
  assert st["failed"] == 0
  assert st["written"] >= 50  # English documentation sources that survive every stage
  assert sum(st[k] for k in latex.LOSSES) + st["written"] == st["records"]
  texts = [d.text for d in res.train + res.validation]
  assert [t[:60] for t in texts if latex.violations(t)] == []
  assert st["inputs_resolved"] > 0  # multi-file documents (e.g. hepthesis' example thesis)
  assert st["metadata_skipped"] == st["records"]
