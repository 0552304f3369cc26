"""Random-access example sources for the shared training loop.

A *source* is any random-access sequence of examples: ``len(src)`` and
``src[i]`` returning a dict of numpy arrays (every example has the same keys,
shapes and dtypes). A source may also provide ``gather(indices)`` returning
the stacked examples at ``indices``; ``jaxpapers.data.pipeline``
uses it when present instead of reading examples one by one.

Sources provided here:

* ``ArraySource``: rows of equal-length arrays (data generated in code).
* ``digits_source``: scikit-learn's 8x8 digits (shipped with the package).
* ``tfds_source``: a TensorFlow Datasets ``data_source`` (no TensorFlow
  needed), for datasets already prepared on disk.

Text corpora (``TextSource``) are in ``jaxpapers.data.corpora``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from jaxpapers.core.errors import UsageError

Example = dict[str, np.ndarray]
Batch = dict[str, np.ndarray]

_TFDS_HINT = "pip install 'jaxpapers[tfds]'"


class Source(Protocol):
  """A random-access sequence of examples."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Example:
    ...


class ArraySource:
  """Examples are the rows of equal-length arrays.

  Attributes:
    arrays: The feature name -> array mapping; row ``i`` of each array is a
      field of example ``i``.
  """

  def __init__(self, arrays: Mapping[str, Any]):
    if not arrays:
      raise ValueError("ArraySource needs at least one array.")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lengths = {k: _leading_length(k, v) for k, v in self.arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(
          f"ArraySource arrays must share their leading length, got {lengths}."
      )
    self._length = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Example:
    return {k: v[index] for k, v in self.arrays.items()}

  def gather(self, indices: np.ndarray) -> Batch:
    """Returns the examples at ``indices``, stacked (numpy fancy indexing)."""
    return {k: v[indices] for k, v in self.arrays.items()}

  def __repr__(self) -> str:
    fields = ", ".join(
        f"{k}: {v.dtype}{list(v.shape[1:])}" for k, v in self.arrays.items()
    )
    return f"ArraySource(len={self._length}, {fields})"


def _leading_length(name: str, array: np.ndarray) -> int:
  if array.ndim == 0:
    raise ValueError(f"ArraySource array {name!r} is a scalar; need ndim >= 1.")
  return array.shape[0]


def digits_source(
    split: str = "train", test_fraction: float = 0.2, seed: int = 0
) -> ArraySource:
  """scikit-learn's 8x8 digits (1797 images, bundled, no download).

  Args:
    split: ``"train"`` or ``"test"``.
    test_fraction: Fraction of the examples in the test split, in (0, 1).
    seed: Seed of the permutation that assigns examples to splits.

  Returns:
    An ``ArraySource`` with ``image`` float32 [64] in [0, 1] and ``label``
    int32 in 0..9, rows in their original order.
  """
  from sklearn.datasets import load_digits

  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
  digits = load_digits()
  n = digits.data.shape[0]
  perm = np.random.default_rng(seed).permutation(n)
  n_test = int(round(n * test_fraction))
  rows = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
  return ArraySource({
      "image": (digits.data[rows] / 16.0).astype(np.float32),
      "label": digits.target[rows].astype(np.int32),
  })


class TfdsSource:
  """A TFDS data source whose examples are converted to numpy arrays.

  Nested feature dicts are flattened with ``/``-joined keys.
  """

  def __init__(self, data_source: Any):
    self.data_source = data_source

  def __len__(self) -> int:
    return len(self.data_source)

  def __getitem__(self, index: int) -> Example:
    return _to_numpy(self.data_source[index])


def _to_numpy(example: Mapping[str, Any], prefix: str = "") -> Example:
  out = {}
  for key, value in example.items():
    if isinstance(value, Mapping):
      out.update(_to_numpy(value, f"{prefix}{key}/"))
    else:
      out[f"{prefix}{key}"] = np.asarray(value)
  return out


def tfds_source(
    name: str, split: str, *, data_dir: str | None = None
) -> TfdsSource:
  """A prepared TFDS dataset as a source (no download, no TensorFlow).

  Args:
    name: TFDS dataset name, e.g. ``"mnist"``.
    split: Split, e.g. ``"train"`` or ``"test[:10%]"``.
    data_dir: TFDS data directory (default: TFDS's own default).

  Returns:
    A ``TfdsSource`` whose examples are dicts of numpy arrays.

  Raises:
    UsageError: the dataset or split is not prepared under ``data_dir`` in a random-access
      format (one line naming the dataset, the folder and the fix; nothing is downloaded).
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f"tfds_source needs tensorflow-datasets: {_TFDS_HINT}"
    ) from e
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # TFDS warns about empty version folders on stderr
  try:
    return TfdsSource(
        tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    )
  except (tfds.core.registered.DatasetNotFoundError, KeyError, FileNotFoundError,
          NotImplementedError) as e:  # NotImplementedError: not in a random-access format
    where = data_dir or tfds.core.constants.DATA_DIR
    raise UsageError(
        f"TFDS dataset {name!r} (split {split!r}) is not prepared in {where} "
        f"({type(e).__name__}); prepare it (`tfds build {name} --data_dir DIR "
        "--file_format array_record`; "
        "jaxpapers never downloads) and point data_dir (an experiment's data.tfds_data_dir) at DIR, "
        "or choose another data.source"
    ) from None
  finally:
    absl_logger.setLevel(level)
