"""Tests for jaxpapers.data.sources."""

import sys

import numpy as np
import pytest

from jaxpapers import data


def _source(n: int = 23) -> data.ArraySource:
  return data.ArraySource({
      "x": np.arange(n, dtype=np.int32),
      "y": np.arange(n * 2, dtype=np.float32).reshape(n, 2),
  })


def test_array_source_rows_and_validation():
  src = _source(5)
  assert len(src) == 5
  ex = src[3]
  assert ex["x"] == 3
  np.testing.assert_array_equal(ex["y"], [6.0, 7.0])
  with pytest.raises(ValueError, match="leading length"):
    data.ArraySource({"a": np.zeros(3), "b": np.zeros(4)})


def _rows(src: data.ArraySource) -> np.ndarray:
  """(image, label) rows sorted lexicographically, for multiset comparison."""
  rows = np.concatenate(
      [src.arrays["image"], src.arrays["label"][:, None].astype(np.float32)], 1
  )
  return rows[np.lexsort(rows.T[::-1])]


def test_digits_source():
  from sklearn.datasets import load_digits

  train, test = data.digits_source("train"), data.digits_source("test")
  assert len(train) + len(test) == 1797
  assert len(test) == round(1797 * 0.2)
  assert train.arrays["image"].shape == (len(train), 64)
  assert train[0]["image"].shape == (64,)
  assert train.arrays["image"].dtype == np.float32
  assert train.arrays["label"].dtype == np.int32
  for src in (train, test):
    assert src.arrays["image"].min() == 0.0
    assert src.arrays["image"].max() == 1.0
    assert set(np.unique(src.arrays["label"]).tolist()) == set(range(10))
  # Disjoint and complete: train + test is the whole dataset as a multiset.
  digits = load_digits()
  full = data.ArraySource({
      "image": (digits.data / 16.0).astype(np.float32),
      "label": digits.target.astype(np.int32),
  })
  both = data.ArraySource({
      k: np.concatenate([train.arrays[k], test.arrays[k]]) for k in full.arrays
  })
  np.testing.assert_array_equal(_rows(both), _rows(full))
  # Deterministic per seed.
  again = data.digits_source("test")
  np.testing.assert_array_equal(again.arrays["image"], test.arrays["image"])
  other = data.digits_source("test", seed=1)
  assert not np.array_equal(other.arrays["image"], test.arrays["image"])


def test_tfds_source_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=5):
    src = data.tfds_source("mnist", "train")
    assert len(src) == 5
    examples = [src[i] for i in range(5)]
    batch = next(data.batches(src, 5, shuffle=False))
  for ex in examples:
    assert isinstance(ex["image"], np.ndarray)
    assert ex["image"].shape == (28, 28, 1)
    assert np.issubdtype(ex["label"].dtype, np.integer)
    assert 0 <= int(ex["label"]) < 10
  assert batch["image"].shape == (5, 28, 28, 1)
  np.testing.assert_array_equal(batch["label"], [e["label"] for e in examples])
  np.testing.assert_array_equal(batch["mask"], np.ones(5))


def test_tfds_source_missing_package(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  with pytest.raises(ImportError, match=r"jaxpapers\[tfds\]"):
    data.tfds_source("mnist", "train")


@pytest.mark.parametrize("name", ["mnist", "no_such_dataset_here"])
def test_tfds_source_not_prepared_is_one_usage_line(name, tmp_path, capfd):
  """A registered dataset with no files and an unknown name both give one UsageError line."""
  pytest.importorskip("tensorflow_datasets")
  from jaxpapers.core.errors import UsageError  # pylint: disable=g-import-not-at-top
  with pytest.raises(UsageError) as info:
    data.tfds_source(name, "train", data_dir=str(tmp_path))
  message = str(info.value)
  assert "\n" not in message
  assert f"'{name}'" in message and str(tmp_path) in message and "tfds build" in message
  assert "absl" not in capfd.readouterr().err
