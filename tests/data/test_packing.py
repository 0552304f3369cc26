"""Tests for jaxpapers.data.documents and jaxpapers.data.packing."""

import json

import grain
import numpy as np
import pytest

from jaxpapers.data import documents as docs_lib
from jaxpapers.data import packing as rsdb_lib

S = 32


def _finite(num_documents: int = 40, seed: int = 0) -> docs_lib.MarkovDocuments:
  """Short documents (median ~55 tokens, some > S) from 4 small chains."""
  return docs_lib.MarkovDocuments(
      docs_lib.markov_domains(4, 32, seed=seed), seed=seed, length_mean=4.0,
      length_sigma=1.0, min_len=1, max_len=400, num_documents=num_documents,
  )


def _drain(it) -> list[dict[str, np.ndarray]]:
  batches = list(it)
  assert batches, "no batch produced"
  return batches


def _stack(batches, key):
  return np.concatenate([b[key] for b in batches])


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _loaders(stream, with_provenance=True, **kw):
  return {
      "rsdb": rsdb_lib.RSDB(stream, 4, S, buffer_size=4, capacity=8, seed=1,
                            with_provenance=with_provenance, **kw),
      "rsdb_chunked_weighted": rsdb_lib.RSDB(
          stream, 4, S, buffer_size=3, max_chunk=5, length_weighted=True, seed=2,
          with_provenance=with_provenance, **kw),
      "sequential": rsdb_lib.SequentialPacker(stream, 4, S,
                                              with_provenance=with_provenance, **kw),
  }


# ---------------------------------------------------------------------------
# Documents.
# ---------------------------------------------------------------------------


def test_documents_are_a_pure_function_of_seed_and_index():
  a, b = _finite(seed=3), _finite(seed=3)
  for i in (0, 7, 39):
    np.testing.assert_array_equal(a[i].tokens, b[i].tokens)
    assert a[i].domain == b[i].domain
    assert a[i].tokens.dtype == np.int32
    assert (len(a[i].tokens), a[i].domain) == a.length_and_domain(i)
  listed = list(docs_lib.iterate(a, start=37))
  assert len(listed) == 3 and np.array_equal(listed[0].tokens, a[37].tokens)
  other = docs_lib.MarkovDocuments(a.domains, seed=4, length_mean=4.0, length_sigma=1.0,
                                   min_len=1, max_len=400)
  assert any(not np.array_equal(a[i].tokens, other[i].tokens) for i in range(5))
  with pytest.raises(IndexError):
    a[40]  # pylint: disable=pointless-statement


def test_lengths_are_clipped_lognormal_and_domains_uniform():
  stream = docs_lib.MarkovDocuments(min_len=16, max_len=200_000)
  lengths, doms = np.array([stream.length_and_domain(i) for i in range(4000)]).T
  assert lengths.min() >= 16 and lengths.max() <= 200_000
  assert np.median(np.log(lengths)) == pytest.approx(7.0, abs=0.1)
  assert np.std(np.log(lengths)) == pytest.approx(1.3, abs=0.1)
  np.testing.assert_allclose(np.bincount(doms, minlength=8) / 4000, 1 / 8, atol=0.02)
  np.testing.assert_allclose(stream.mix, 1 / 8)


def test_sampler_follows_the_transition_support_exactly():
  v = 10
  nxt = np.zeros((1, v, v))
  for a in range(v):  # token a -> a+1 or a+3 (mod v), prob 0.3 / 0.7
    nxt[0, a, (a + 1) % v], nxt[0, a, (a + 3) % v] = 0.3, 0.7
  initial = np.zeros((1, v))
  initial[0, 4] = 1.0
  y = docs_lib.MarkovDomains(nxt, initial).sample(0, 20_000, np.random.default_rng(0))
  assert y[0] == 4
  step = (y[1:] - y[:-1]) % v
  assert set(np.unique(step)) == {1, 3}
  assert np.mean(step == 3) == pytest.approx(0.7, abs=0.02)


def test_markov_statistics_match_the_transition_rows():
  domains = docs_lib.markov_domains(num_domains=2, vocab_size=32, concentration=0.1, seed=5)
  stream = docs_lib.MarkovDocuments(domains, length_sigma=0.0, min_len=200_000,
                                    max_len=200_000)
  doc = stream[0]
  assert len(doc.tokens) == 200_000
  x, y = doc.tokens[:-1], doc.tokens[1:]
  for a in np.argsort(np.bincount(x, minlength=32))[::-1][:3]:  # three most frequent tokens
    empirical = np.bincount(y[x == a], minlength=32) / np.sum(x == a)
    tv = 0.5 * np.abs(empirical - domains.transitions[doc.domain, a]).sum()
    assert tv < 0.05, (a, tv)
  np.testing.assert_allclose(domains.transitions.sum(-1), 1.0)


def test_stdlib_documents_are_files_with_package_domains(tmp_path):
  (tmp_path / "pkg").mkdir()
  (tmp_path / "pkg" / "a.py").write_bytes(b"x = 1\n" * 50)
  (tmp_path / "pkg" / "empty.py").write_bytes(b"")
  (tmp_path / "mod.py").write_bytes(b"import os\n")
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "b.py").write_bytes(b"y = 2\n")
  paths = sorted(tmp_path.rglob("*.py"))
  stream = docs_lib.StdlibDocuments(paths, max_domains=2)
  assert stream.domain_names == ["pkg", "<other>"]
  for i, path in enumerate(paths):
    doc = stream[i]
    assert bytes(doc.tokens.astype(np.uint8)) == path.read_bytes()
    assert doc.domain == (0 if "pkg" in path.parts else 1)
  np.testing.assert_allclose(stream.mix, [300 / 316, 16 / 316])
  cycled = docs_lib.StdlibDocuments(paths, repeat=True)
  np.testing.assert_array_equal(cycled[len(paths) + 1].tokens, cycled[1].tokens)
  # Conservation on real files, empty one skipped.
  seq = _drain(rsdb_lib.SequentialPacker(stream, 2, 16))
  inputs = _stack(seq, "inputs")[_stack(seq, "segment_ids") > 0]
  assert bytes(inputs.astype(np.uint8)) == b"".join(p.read_bytes() for p in paths)
  buf = _drain(rsdb_lib.RSDB(stream, 2, 16, buffer_size=1, with_provenance=True))
  real = _stack(buf, "segment_ids") > 0
  ids, tokens = _stack(buf, "doc_ids")[real], _stack(buf, "inputs")[real]
  for i, path in enumerate(paths):  # in order per file; the empty file never appears
    assert bytes(tokens[ids == i].astype(np.uint8)) == path.read_bytes()


def test_default_stdlib_stream_is_sorted_and_bucketed():
  stream = docs_lib.StdlibDocuments()
  assert stream.paths == sorted(stream.paths) and stream.num_files > 100
  assert stream.num_domains == 8 and stream.mix.sum() == pytest.approx(1.0)
  assert "<top>" in stream.domain_names
  doc = stream[3]
  assert doc.tokens.max() < 256 and len(doc.tokens) == stream.file_sizes[3]


# ---------------------------------------------------------------------------
# Loaders.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rsdb", "rsdb_chunked_weighted", "sequential"])
def test_every_token_emitted_once_in_document_order(name):
  stream = _finite()
  batches = _drain(_loaders(stream)[name])
  seg = _stack(batches, "segment_ids").reshape(-1)
  real = seg > 0
  doc_ids = _stack(batches, "doc_ids").reshape(-1)[real]
  positions = _stack(batches, "positions").reshape(-1)[real]
  inputs = _stack(batches, "inputs").reshape(-1)[real]
  domains = _stack(batches, "domains").reshape(-1)[real]
  total = sum(len(d.tokens) for d in stream)
  assert real.sum() == total
  for index in range(len(stream)):
    doc = stream[index]
    mine = doc_ids == index
    np.testing.assert_array_equal(positions[mine], np.arange(len(doc.tokens)))  # once, in order
    np.testing.assert_array_equal(inputs[mine], doc.tokens)
    assert np.all(domains[mine] == doc.domain)


@pytest.mark.parametrize("name", ["rsdb", "rsdb_chunked_weighted", "sequential"])
def test_rows_full_segments_and_targets(name):
  stream = _finite()
  batches = _drain(_loaders(stream)[name])
  seg = _stack(batches, "segment_ids")
  counts = (seg > 0).sum(1)
  last = np.nonzero(counts < S)[0]
  assert len(last) == 0 or (last[0] == len(counts) - len(last) and counts[last[0]] > 0
                            and np.all(counts[last[1:]] == 0))  # padding only at the very end
  assert len(last) <= 4  # within the final batch
  lengths = {i: len(stream[i].tokens) for i in range(len(stream))}
  for b in batches:
    assert b["inputs"].shape == (4, S) and b["inputs"].dtype == np.int32
    assert b["mask"].dtype == np.float32 and b["targets"].dtype == np.int32
    for r in range(4):
      s, d, p = b["segment_ids"][r], b["doc_ids"][r], b["positions"][r]
      n = int((s > 0).sum())
      assert np.all(s[n:] == 0) and (n == 0 or s[0] == 1)
      assert np.all(np.diff(s[:n]) >= 0) and np.all(np.diff(s[:n]) <= 1)
      same = np.diff(s[:n]) == 0
      assert np.all(d[1:n][same] == d[:n - 1][same])  # a segment is one document...
      assert np.all(p[1:n][same] == p[:n - 1][same] + 1)  # ...read contiguously
      for t in range(n):
        tokens = stream[int(d[t])].tokens
        has_next = p[t] + 1 < lengths[int(d[t])]
        assert b["mask"][r, t] == float(has_next)
        assert b["targets"][r, t] == (tokens[p[t] + 1] if has_next else -1)
      assert np.all(b["mask"][r, n:] == 0) and np.all(b["targets"][r, n:] == -1)
      assert np.all(b["domains"][r, n:] == -1)


def test_sequential_packer_is_the_concatenated_stream():
  stream = _finite(30)
  batches = _drain(rsdb_lib.SequentialPacker(stream, 4, S))
  flat = _stack(batches, "inputs").reshape(-1)
  concat = np.concatenate([d.tokens for d in stream])
  np.testing.assert_array_equal(flat[:len(concat)], concat)
  assert np.all(_stack(batches, "segment_ids").reshape(-1)[len(concat):] == 0)
  assert len(flat) - len(concat) < 4 * S
  # On the infinite stream every row is full.
  it = rsdb_lib.SequentialPacker(docs_lib.MarkovDocuments(length_mean=5.0), 4, S)
  assert all(np.all(next(it)["segment_ids"] > 0) for _ in range(20))


def test_rsdb_refills_in_bulk_when_live_count_drops_to_buffer_size():
  stream = _finite(200)  # min_len=1: no document is skipped
  it = rsdb_lib.RSDB(stream, 2, S, buffer_size=5, capacity=12)
  loaded = []
  for _ in range(60):
    next(it)
    assert 5 <= it.num_live <= 12
    loaded.append(it.next_doc)
  assert loaded[0] == 12  # first fill to capacity
  assert all((n - 12) % 7 == 0 for n in loaded)  # refills of capacity - buffer_size docs
  assert len(set(loaded)) >= 4


def test_resume_yields_identical_batches_across_refills():
  stream = _finite(400)
  for make in (lambda: rsdb_lib.RSDB(stream, 4, S, buffer_size=3, capacity=6, seed=7),
               lambda: rsdb_lib.RSDB(stream, 4, S, buffer_size=3, max_chunk=7,
                                     length_weighted=True, seed=7),
               lambda: rsdb_lib.SequentialPacker(stream, 4, S)):
    ref = make()
    for _ in range(5):
      next(ref)
    state = json.loads(json.dumps(ref.get_state()))
    before = getattr(ref, "next_doc", getattr(ref, "doc", None))
    expected = [next(ref) for _ in range(12)]
    assert getattr(ref, "next_doc", getattr(ref, "doc", None)) > before  # new documents loaded
    restored = make()
    restored.set_state(state)
    _assert_same_batches([next(restored) for _ in range(12)], expected)
    assert restored.get_state() == ref.get_state()


def test_resume_at_the_end_of_a_finite_stream_and_state_mismatch():
  stream = _finite(10)
  it = rsdb_lib.RSDB(stream, 2, S, buffer_size=2)
  batches = _drain(it)
  fresh = rsdb_lib.RSDB(stream, 2, S, buffer_size=2)
  fresh.set_state(it.get_state())
  with pytest.raises(StopIteration):
    next(fresh)
  assert len(batches) > 1
  with pytest.raises(ValueError, match="buffer_size"):
    rsdb_lib.RSDB(stream, 2, S, buffer_size=3).set_state(it.get_state())
  with pytest.raises(ValueError, match="kind"):
    rsdb_lib.SequentialPacker(stream, 2, S).set_state(it.get_state())


@pytest.mark.parametrize("kind", ["rsdb", "sequential"])
def test_process_slices_concatenate_to_the_global_batch(kind):
  stream = docs_lib.MarkovDocuments(docs_lib.markov_domains(4, 32), length_mean=5.0)

  def make(p, n):
    if kind == "rsdb":
      return rsdb_lib.RSDB(stream, 8, S, buffer_size=4, process_index=p, process_count=n)
    return rsdb_lib.SequentialPacker(stream, 8, S, process_index=p, process_count=n)

  single = make(0, 1)
  parts = [make(p, 4) for p in range(4)]
  for _ in range(6):
    whole = next(single)
    pieces = [next(it) for it in parts]
    assert pieces[0]["inputs"].shape == (2, S)
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([x[key] for x in pieces]), whole[key])
  with pytest.raises(ValueError, match="divisible"):
    make(0, 3)


def test_domain_tv():
  mix = np.full(4, 0.25)
  assert rsdb_lib.domain_tv(np.zeros((2, 8), np.int32), mix) == pytest.approx(0.75)
  assert rsdb_lib.domain_tv(np.array([[0, 1, 2, 3, -1, -1]]), mix) == pytest.approx(0.0)
  assert rsdb_lib.domain_tv(np.array([0, 0, 1, 1]), mix) == pytest.approx(0.5)
  assert np.isnan(rsdb_lib.domain_tv(np.full(3, -1), mix))


def test_rsdb_mixes_domains_better_than_sequential_packing():
  stream = docs_lib.MarkovDocuments(length_mean=7.0, length_sigma=1.3)
  seq = rsdb_lib.SequentialPacker(stream, 16, 256)
  buf = rsdb_lib.RSDB(stream, 16, 256, buffer_size=32)
  tv_seq = np.mean([rsdb_lib.domain_tv(next(seq)["domains"], stream.mix) for _ in range(30)])
  tv_buf = np.mean([rsdb_lib.domain_tv(next(buf)["domains"], stream.mix) for _ in range(30)])
  assert tv_seq > 0.5 and tv_buf < 0.45 and tv_buf < 0.6 * tv_seq


def test_rsdb_is_a_grain_iterator_and_resumes_through_grain_transforms():
  """RSDB as a grain IterDataset: a `.map` after it keeps the packer's state, bit-exact."""
  stream = docs_lib.MarkovDocuments(length_mean=20.0)
  ds = rsdb_lib.PackedDataset(lambda: rsdb_lib.RSDB(stream, 2, S, buffer_size=3, seed=1)).map(
      lambda b: {**b, "tokens": b["mask"].sum()})
  it = iter(ds)
  assert isinstance(iter(ds), grain.DatasetIterator)
  for _ in range(3):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(4)]
  resumed = iter(ds)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    assert got.keys() == want.keys()
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  assert expected[0]["tokens"] == expected[0]["mask"].sum()
