"""Images of the DDiT experiment (arXiv 2602.16968): shapes16, scikit-learn digits, TFDS.

* `shapes16` (`jaxpapers.data.shapes`): procedural 16 x 16 images with "simple" and textured
  content, drawn fresh for every batch (batch i is images i B .. (i + 1) B - 1 of the stream).
* `digits`: scikit-learn's 8 x 8 digits (class-conditional), up-sampled to `data.size` by pixel
  repetition, in [-1, 1].
* `tfds`: a TFDS image dataset the user prepared (no download), uint8 images scaled to [-1, 1].
"""

from __future__ import annotations

import numpy as np

from jaxpapers import data as data_lib
from jaxpapers.core.errors import ConfigError
from jaxpapers.data.shapes import shapes16

from .config import DDiTConfig

EVAL_SEED = 1  # the held-out real images: a stream of its own


class ShapesStream(data_lib.IndexedBatches):
  """Batch i: shapes16 images i B .. (i + 1) B - 1 of the training stream (resumable by index)."""

  def __init__(self, batch_size: int, seed: int):
    self.batch_size, self.seed = batch_size, seed

  def batch(self, index: int) -> dict[str, np.ndarray]:
    x0 = shapes16(self.batch_size, seed=self.seed, start=index * self.batch_size)
    return {"x0": x0, "label": np.zeros(self.batch_size, np.int32)}


def _digits(split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  src = data_lib.digits_source(split)
  images = src.arrays["image"].reshape(-1, 8, 8)
  rep = size // 8
  images = np.repeat(np.repeat(images, rep, 1), rep, 2)[..., None]
  return (2 * images - 1).astype(np.float32), src.arrays["label"]


def tfds_images(config: DDiTConfig, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The TFDS dataset's images in [-1, 1] and labels (0 where it has none).

  Raises:
    ConfigError: its images are not data.size x data.size with the model's channels.
  """
  d = config.data
  src = data_lib.tfds_source(d.tfds_name, split or d.tfds_split, data_dir=d.tfds_data_dir or None)
  examples = [src[i] for i in range(len(src))]
  images = np.stack([e["image"] for e in examples]).astype(np.float32)
  want = (d.size, d.size, config.model.dit.channels)
  if images.shape[1:] != want:
    raise ConfigError(f"TFDS dataset {d.tfds_name} has images {images.shape[1:]}; the model takes "
                      f"{want}: set data.size and model.dit.channels to match")
  labels = np.asarray([e.get("label", 0) for e in examples], np.int32)
  return images / 127.5 - 1, labels


def train_data(config: DDiTConfig, seed: int, pad_to_multiple: int = 1):
  """The training batches of `config.data.source` (resumable iterators)."""
  d = config.data
  if d.source == "shapes16":
    return ShapesStream(config.batch_size, d.seed + seed)
  if d.source == "digits":
    x0, labels = _digits("train", d.size)
  else:
    x0, labels = tfds_images(config)
  return data_lib.batches(data_lib.ArraySource({"x0": x0, "label": labels}), config.batch_size,
                          seed=d.seed + seed, pad_to_multiple=pad_to_multiple)


def real_images(config: DDiTConfig, n: int, start: int = 0):
  """(images [n, H, W, C], labels [n], textured [n] or None): held-out real images."""
  d = config.data
  if d.source == "shapes16":
    images, textured = shapes16(n, seed=EVAL_SEED, start=start, with_texture=True)
    return images, np.zeros(n, np.int32), textured
  x0, labels = _digits("test", d.size) if d.source == "digits" else tfds_images(config)
  rows = np.arange(start, start + n) % len(x0)
  return x0[rows], labels[rows], None
