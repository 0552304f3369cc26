"""Tests for jaxpapers.data.pipeline (grain batches, evaluation batches, the full batch)."""

import json

import grain
import numpy as np
import pytest

from jaxpapers import data


def _source(n: int = 23) -> data.ArraySource:
  return data.ArraySource({
      "x": np.arange(n, dtype=np.int32),
      "y": np.arange(n * 2, dtype=np.float32).reshape(n, 2),
  })


def _take(it, k: int) -> list[dict[str, np.ndarray]]:
  return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for ba, bb in zip(a, b):
    assert ba.keys() == bb.keys()
    for key in ba:
      np.testing.assert_array_equal(ba[key], bb[key])


def _epoch_orders(seed: int, epochs: int = 2, n: int = 20) -> list[np.ndarray]:
  it = data.batches(_source(n), 5, seed=seed)
  return [np.concatenate([b["x"] for b in _take(it, n // 5)]) for _ in range(epochs)]


def test_every_example_once_per_epoch_in_grains_order():
  first, second = _epoch_orders(seed=0)
  np.testing.assert_array_equal(np.sort(first), np.arange(20))
  np.testing.assert_array_equal(np.sort(second), np.arange(20))
  assert not np.array_equal(first, second)
  # grain's own shuffle, reseeded per epoch: epoch e is MapDataset.shuffle(seed + e).
  for epoch, order in enumerate((first, second)):
    expected = list(grain.MapDataset.range(20).shuffle(seed=epoch))
    np.testing.assert_array_equal(order, expected)


def test_same_seed_same_order_different_seed_different_order():
  a, b, c = _epoch_orders(0), _epoch_orders(0), _epoch_orders(1)
  for ea, eb in zip(a, b):
    np.testing.assert_array_equal(ea, eb)
  assert not np.array_equal(a[0], c[0])


def test_batch_contents_and_mask():
  batch = next(data.batches(_source(), 4, shuffle=False))
  assert set(batch) == {"x", "y", "mask"}
  np.testing.assert_array_equal(batch["x"], [0, 1, 2, 3])
  np.testing.assert_array_equal(batch["y"][:, 1], [1.0, 3.0, 5.0, 7.0])
  assert batch["mask"].dtype == np.float32
  np.testing.assert_array_equal(batch["mask"], np.ones(4))


def test_drop_remainder_epoch_boundary():
  xs = [b["x"].tolist() for b in _take(data.batches(_source(10), 4, shuffle=False), 3)]
  assert xs == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


def test_partial_last_batch_padded_and_masked():
  batches = _take(data.batches(_source(10), 4, shuffle=False, drop_remainder=False), 4)
  np.testing.assert_array_equal(batches[2]["x"], [8, 9, 9, 9])
  np.testing.assert_array_equal(batches[2]["mask"], [1, 1, 0, 0])
  np.testing.assert_array_equal(batches[3]["x"], [0, 1, 2, 3])


def test_resume_across_epoch_boundary():
  it = data.batches(_source(), 4, seed=3)  # 5 batches per epoch
  _take(it, 7)
  state = json.loads(json.dumps(it.get_state()))  # JSON: it goes into the checkpoint record
  expected = _take(it, 5)  # ends in epoch 2
  fresh = data.batches(_source(), 4, seed=3)
  fresh.set_state(state)
  _assert_batches_equal(_take(fresh, 5), expected)


def test_transforms_compose_and_keep_the_state():
  """A grain `.map` after the batches keeps the iterator checkpointable."""
  ds = data.batch_dataset(_source(), 4, seed=1).map(lambda b: {**b, "x2": 2 * b["x"]})
  it = data.iterator(ds)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 2)
  fresh = data.iterator(ds)
  fresh.set_state(state)
  got = _take(fresh, 2)
  _assert_batches_equal(got, expected)
  np.testing.assert_array_equal(got[0]["x2"], 2 * got[0]["x"])


@pytest.mark.parametrize("pad_to_multiple", [1, 8])
def test_process_slices_concatenate_to_global_batch(pad_to_multiple):
  kwargs = dict(seed=5, drop_remainder=False, pad_to_multiple=pad_to_multiple)
  whole = data.batches(_source(), 6, **kwargs)
  parts = [data.batches(_source(), 6, process_index=p, process_count=2, **kwargs) for p in range(2)]
  for _ in range(9):  # crosses epochs and the padded partial batch
    glob = next(whole)
    slices = [next(p) for p in parts]
    assert len(slices[0]["x"]) == len(slices[1]["x"])
    for key in glob:
      np.testing.assert_array_equal(np.concatenate([s[key] for s in slices]), glob[key])


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=5, process_count=2), "process_count"),
    (dict(batch_size=30), "exceeds"),
    (dict(batch_size=4, seed=-1), "seed"),
])
def test_bad_arguments_name_the_problem(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.batches(_source(), **kwargs)


def test_eval_batches_cover_the_source_once_in_equal_shapes():
  batches = data.eval_batches(_source(10), 4, pad_to_multiple=2)
  assert [b["x"].shape for b in batches] == [(4,)] * 3
  np.testing.assert_array_equal(np.concatenate([b["x"] for b in batches]),
                                list(range(10)) + [9, 9])
  assert sum(b["mask"].sum() for b in batches) == 10
  assert len(data.eval_batches(_source(3), 8)) == 1  # a batch larger than the source: one batch


def test_full_batch_padding():
  src = _source(10)
  batch = next(data.full_batch(src, pad_to_multiple=8))
  assert batch["x"].shape == (16,)
  assert batch["y"].shape == (16, 2)
  assert batch["mask"].sum() == 10
  np.testing.assert_array_equal(batch["mask"][10:], np.zeros(6))
  np.testing.assert_array_equal(batch["x"][:10], np.arange(10))
  np.testing.assert_array_equal(batch["x"][10:], np.full(6, 9))
  quarters = [next(data.full_batch(src, process_index=p, process_count=4)) for p in range(4)]
  assert [len(h["x"]) for h in quarters] == [3, 3, 3, 3]
  assert sum(h["mask"].sum() for h in quarters) == 10


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
  _assert_batches_equal(_take(data.batches(generic, 3, **kwargs), 6),
                        _take(data.batches(src, 3, **kwargs), 6))


def test_full_batch_hands_out_one_object_and_counts_steps():
  """Full-batch training reuses one batch object (the trainer then skips re-sending it)."""
  it = data.full_batch(data.ArraySource({"x": np.arange(10)}), pad_to_multiple=4)
  first, second = next(it), next(it)
  assert first is second and it.get_state() == {"steps": 2}
  np.testing.assert_array_equal(first["mask"], [1] * 10 + [0] * 2)
  it.set_state({"steps": 7})
  assert it.get_state() == {"steps": 7}
