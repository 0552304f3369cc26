"""`shapes16`: procedural 16x16 grayscale images of simple shapes, for the diffusion experiments.

A random linear-gradient background (amplitude <= 0.3) and 1-3 objects (disc, axis-aligned
square, triangle) of size 3-7 px and intensity in [-0.2, 1]; in half of the images one object is
filled with a 2-px-period stripe or checker texture of amplitude 0.3 ("complex" content beside
"simple"). Values are clipped to [-1, 1]. The generator is numpy and fixed by its seed: image `i`
of seed `s` depends on (s, i) only, so any slice of the stream can be drawn on its own.
"""

from __future__ import annotations

import numpy as np

SIZE = 16


def _object_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
  """A disc, square or triangle of size 3-7 px at a random place, as a boolean [16, 16] mask."""
  kind = rng.integers(3)
  size = int(rng.integers(3, 8))
  top, left = rng.integers(0, SIZE - size + 1, size=2)
  y, x = yy - top, xx - left  # coordinates inside the object's box
  inside = (y >= 0) & (y < size) & (x >= 0) & (x < size)
  if kind == 0:  # disc inscribed in the box
    c = (size - 1) / 2
    return inside & ((y - c) ** 2 + (x - c) ** 2 <= (size / 2) ** 2)
  if kind == 1:  # square
    return inside
  return inside & (x <= y)  # right triangle, the box's lower-left half


def _image(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, bool]:
  amplitude = rng.uniform(0, 0.3)
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * (xx - 7.5) + np.sin(angle) * (yy - 7.5)) / 7.5
  image = amplitude * ramp
  textured = bool(rng.random() < 0.5)
  count = int(rng.integers(1, 4))
  textured_index = int(rng.integers(count))
  for index in range(count):
    mask = _object_mask(rng, yy, xx)
    fill = np.full((SIZE, SIZE), rng.uniform(-0.2, 1.0))
    if textured and index == textured_index:
      pattern = yy % 2 if rng.random() < 0.5 else (yy + xx) % 2  # period 2 px
      fill = fill + 0.3 * (2 * pattern - 1)
    image = np.where(mask, fill, image)
  return np.clip(image, -1, 1), textured


def shapes16(n: int, seed: int = 0, start: int = 0, with_texture: bool = False):
  """Images `start .. start + n - 1` of the stream of `seed`.

  Args:
    n: number of images.
    seed: the stream's seed.
    start: index of the first image (streams are indexable: image i depends on (seed, i) only).
    with_texture: also return whether each image has a textured object.

  Returns:
    float32 [n, 16, 16, 1] in [-1, 1]; with `with_texture`, also bool [n].
  """
  if n < 0 or start < 0:
    raise ValueError(f"shapes16: n={n} and start={start} must be >= 0")
  yy, xx = np.mgrid[:SIZE, :SIZE]
  images, textures = [], []
  for i in range(start, start + n):
    image, textured = _image(np.random.default_rng([seed, i]), yy, xx)
    images.append(image)
    textures.append(textured)
  out = np.asarray(images, np.float32).reshape(n, SIZE, SIZE, 1)
  return (out, np.asarray(textures, bool)) if with_texture else out
