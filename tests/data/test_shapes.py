"""shapes16: range, determinism, indexability, texture statistics."""

import numpy as np

from jaxpapers.data.shapes import shapes16


def test_shapes16_is_indexable_deterministic_and_in_range():
  images, textured = shapes16(64, seed=3, with_texture=True)
  assert images.shape == (64, 16, 16, 1) and images.dtype == np.float32
  assert images.min() >= -1 and images.max() <= 1
  np.testing.assert_array_equal(shapes16(8, seed=3, start=10), images[10:18])
  assert not np.array_equal(shapes16(8, seed=4), images[:8])
  assert 0.3 < textured.mean() < 0.7  # half of the images carry a texture


def test_textured_images_have_more_high_frequency_energy():
  images, textured = shapes16(400, seed=0, with_texture=True)
  x = images[..., 0]
  energy = np.mean(np.diff(x, axis=1) ** 2, axis=(1, 2)) + np.mean(np.diff(x, axis=2) ** 2, axis=(1, 2))
  assert energy[textured].mean() > 1.5 * energy[~textured].mean()
