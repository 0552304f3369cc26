"""The synthetic jailbreak world: token recipes, labels, alpha scaling, determinism."""

import numpy as np
import pytest

from jaxpapers.safety import toy


@pytest.fixture(scope="module")
def world():
  return toy.make_world(3)


def _nearest(x, vectors):
  """Index of the nearest vector to each token, and the distance."""
  d = np.linalg.norm(x[..., None, :] - vectors, axis=-1)
  return d.argmin(-1), d.min(-1)


def test_benign_and_template_prompts(world):
  x, y = toy.benign(world, 400, "t")
  assert x.shape == (400, 8, 32) and set(np.unique(y)) <= set(range(1, 9))
  topic, _ = _nearest(x, world.benign_means)
  assert np.mean(topic == (y - 1)[:, None]) > 0.99
  xt, yt = toy.benign(world, 400, "t", template=True)
  np.testing.assert_array_equal(yt, y)                         # same stream, same topics
  k, dist = _nearest(xt, world.templates)
  assert ((dist < 3.0).sum(1) == 3).all()                      # exactly 3 template tokens (0.3 noise)


def test_harmful_labels_and_compliance(world):
  _, y = toy.harmful(world, 4000, "h")
  assert (y == toy.REFUSE).all()
  _, yc = toy.harmful(world, 4000, "h", comply=0.35)
  assert abs(np.mean(yc != toy.REFUSE) - 0.35) < 0.03 and yc.max() <= 8


def test_jailbreaks_scale_the_harmful_tokens_of_the_same_prompts(world):
  x1, y = toy.jailbreak(world, 50, "j", 1.0)
  x7, _ = toy.jailbreak(world, 50, "j", 0.7)
  assert (y == toy.REFUSE).all()
  changed = ~np.isclose(x1, x7).all(-1)
  assert (changed.sum(1) == 3).all()                            # only the 3 harmful tokens differ
  np.testing.assert_allclose(x7[changed], 0.7 * x1[changed], rtol=1e-5)
  _, dist = _nearest(x1, world.templates)
  assert ((dist < 3.0).sum(1) == 3).all()
  np.testing.assert_array_equal(toy.jailbreak(world, 50, "j", 0.7)[0], x7)


def test_base_set_mixes_the_parts(world):
  x, y = toy.base_training_set(world, 100, 20, 40, 0.5)
  assert x.shape == (160, 8, 32) and 5 <= np.sum(y == 0) <= 35
  with pytest.raises(ValueError, match="6 tokens"):
    toy.make_world(0, length=5)
