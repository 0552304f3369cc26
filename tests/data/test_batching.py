"""Tests for jaxpapers.data.batching."""

import json

import numpy as np
import pytest

from jaxpapers import data


def _source(n: int = 23) -> data.ArraySource:
  return data.ArraySource({
      "x": np.arange(n, dtype=np.int32),
      "y": np.arange(n * 2, dtype=np.float32).reshape(n, 2),
  })


def _take(it: data.BatchIterator, k: int) -> list[dict[str, np.ndarray]]:
  return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for ba, bb in zip(a, b):
    assert ba.keys() == bb.keys()
    for key in ba:
      np.testing.assert_array_equal(ba[key], bb[key])


def _epoch_orders(seed: int, epochs: int = 2, n: int = 20) -> list[np.ndarray]:
  it = data.BatchIterator(_source(n), 5, seed=seed)
  per_epoch = n // 5
  return [
      np.concatenate([b["x"] for b in _take(it, per_epoch)])
      for _ in range(epochs)
  ]


def test_every_example_once_per_epoch_and_order_changes():
  first, second = _epoch_orders(seed=0)
  np.testing.assert_array_equal(np.sort(first), np.arange(20))
  np.testing.assert_array_equal(np.sort(second), np.arange(20))
  assert not np.array_equal(first, second)
  np.testing.assert_array_equal(
      first, np.random.default_rng([0, 0]).permutation(20)
  )


def test_same_seed_same_order_different_seed_different_order():
  a, b, c = _epoch_orders(0), _epoch_orders(0), _epoch_orders(1)
  for ea, eb in zip(a, b):
    np.testing.assert_array_equal(ea, eb)
  assert not np.array_equal(a[0], c[0])


def test_batch_contents_and_mask():
  it = data.BatchIterator(_source(), 4, shuffle=False)
  batch = next(it)
  assert set(batch) == {"x", "y", "mask"}
  np.testing.assert_array_equal(batch["x"], [0, 1, 2, 3])
  np.testing.assert_array_equal(batch["y"][:, 1], [1.0, 3.0, 5.0, 7.0])
  assert batch["mask"].dtype == np.float32
  np.testing.assert_array_equal(batch["mask"], np.ones(4))


def test_drop_remainder_epoch_boundary():
  it = data.BatchIterator(_source(10), 4, shuffle=False)
  xs = [b["x"].tolist() for b in _take(it, 3)]
  assert xs == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]
  assert it.steps_per_epoch == 2


def test_partial_last_batch_padded_and_masked():
  it = data.BatchIterator(_source(10), 4, shuffle=False, drop_remainder=False)
  batches = _take(it, 4)
  np.testing.assert_array_equal(batches[2]["x"], [8, 9, 9, 9])
  np.testing.assert_array_equal(batches[2]["mask"], [1, 1, 0, 0])
  np.testing.assert_array_equal(batches[3]["x"], [0, 1, 2, 3])
  assert it.steps_per_epoch == 3


def test_resume_across_epoch_boundary():
  kwargs = dict(batch_size=4, seed=3)
  it = data.BatchIterator(_source(), **kwargs)  # 5 batches per epoch.
  _take(it, 7)
  state = json.loads(json.dumps(it.get_state()))
  assert state["epoch"] == 1 and state["position"] == 8
  expected = _take(it, 5)  # Ends in epoch 2.
  assert it.epoch == 2
  fresh = data.BatchIterator(_source(), **kwargs)
  fresh.set_state(state)
  _assert_batches_equal(_take(fresh, 5), expected)


def test_set_state_rejects_mismatch():
  state = data.BatchIterator(_source(), 4, seed=3).get_state()
  with pytest.raises(ValueError, match="seed"):
    data.BatchIterator(_source(), 4, seed=4).set_state(state)
  with pytest.raises(ValueError, match="batch_size"):
    data.BatchIterator(_source(), 2, seed=3).set_state(state)


@pytest.mark.parametrize("pad_to_multiple", [1, 8])
def test_process_slices_concatenate_to_global_batch(pad_to_multiple):
  kwargs = dict(seed=5, drop_remainder=False, pad_to_multiple=pad_to_multiple)
  whole = data.BatchIterator(_source(), 6, **kwargs)
  parts = [
      data.BatchIterator(
          _source(), 6, process_index=p, process_count=2, **kwargs
      )
      for p in range(2)
  ]
  for _ in range(9):  # Crosses epochs and the padded partial batch.
    glob = next(whole)
    slices = [next(p) for p in parts]
    assert len(slices[0]["x"]) == len(slices[1]["x"])
    for key in glob:
      np.testing.assert_array_equal(
          np.concatenate([s[key] for s in slices]), glob[key]
      )


def test_batch_size_not_divisible_by_process_count():
  with pytest.raises(ValueError, match="process_count"):
    data.BatchIterator(_source(), 5, process_count=2)


def test_full_batch_padding():
  src = _source(10)
  batch = next(data.full_batch(src, pad_to_multiple=8))
  assert batch["x"].shape == (16,)
  assert batch["y"].shape == (16, 2)
  assert batch["mask"].sum() == 10
  np.testing.assert_array_equal(batch["mask"][10:], np.zeros(6))
  np.testing.assert_array_equal(batch["x"][:10], np.arange(10))
  np.testing.assert_array_equal(batch["x"][10:], np.full(6, 9))
  halves = [
      next(data.full_batch(src, process_index=p, process_count=4))
      for p in range(4)
  ]
  assert [len(h["x"]) for h in halves] == [3, 3, 3, 3]
  assert sum(h["mask"].sum() for h in halves) == 10


class _ListSource:
  """A generic source without ``gather``: read example by example."""

  def __init__(self, examples):
    self.examples = examples

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, index):
    return self.examples[index]


def test_generic_source_matches_array_source():
  src = _source(11)
  generic = _ListSource([src[i] for i in range(len(src))])
  kwargs = dict(seed=2, drop_remainder=False, pad_to_multiple=4)
  _assert_batches_equal(
      _take(data.BatchIterator(generic, 3, **kwargs), 6),
      _take(data.BatchIterator(src, 3, **kwargs), 6),
  )


def test_full_batch_hands_out_one_object_and_still_tracks_position():
  """Full-batch training reuses one batch object (the trainer then skips re-sending it)."""
  source = data.ArraySource({"x": np.arange(10)})
  it = data.full_batch(source, pad_to_multiple=4)
  first, second = next(it), next(it)
  assert first is second and it.get_state()["epoch"] == 1
  np.testing.assert_array_equal(first["mask"], [1] * 10 + [0] * 2)
  shuffled = data.BatchIterator(source, 10, shuffle=True, drop_remainder=False)
  assert next(shuffled) is not next(shuffled)
