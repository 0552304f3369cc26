"""push2d: analytic pushes, success rule, vmap = per-episode, renderings, the scripted expert."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.envs import push2d as p


def _state(agent, box, goal=(0.9, 0.9)):
  return p.State(jnp.asarray(agent, jnp.float32), jnp.asarray(box, jnp.float32),
                 jnp.asarray(goal, jnp.float32), jnp.zeros((), jnp.int32), jnp.asarray(False))


def test_push_translates_the_box_out_by_the_overlap():
  # Agent moving right by 0.04 from x=0.36 into a box whose left face is at 0.44: overlap 0.
  # from 0.40 + 0.04 radius = 0.44 touches; one more step penetrates by 0.04 -> box moves 0.04.
  s = p.step(_state((0.40, 0.5), (0.5, 0.5)), jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(s.agent, [0.44, 0.5], atol=1e-6)
  np.testing.assert_allclose(s.box, [0.54, 0.5], atol=1e-6)
  # A corner contact pushes along the diagonal normal by r - distance.
  box = jnp.array([0.5, 0.5])
  agent = box - p.BOX_HALF - 0.02  # 0.02 * sqrt(2) from the corner, inside the radius
  new = p.push_box(agent, box)
  overlap = p.AGENT_RADIUS - 0.02 * np.sqrt(2)
  np.testing.assert_allclose(new, box + overlap / np.sqrt(2), atol=1e-6)
  # No contact: nothing moves.
  np.testing.assert_allclose(p.push_box(jnp.array([0.2, 0.2]), box), box)


def test_success_is_sticky_and_uses_the_radius():
  s = _state((0.1, 0.1), (0.5, 0.5), goal=(0.5 + 0.069, 0.5))
  assert bool(p.step(s, jnp.zeros(2)).success)
  far = p.step(_state((0.1, 0.1), (0.5, 0.5), goal=(0.5 + 0.071, 0.5)), jnp.zeros(2))
  assert not bool(far.success)
  assert bool(p.step(far._replace(success=jnp.asarray(True)), jnp.zeros(2)).success)


@pytest.mark.slow
def test_vmapped_expert_equals_per_episode_and_mostly_succeeds():
  keys = jax.random.split(jax.random.key(0), 64)
  _, actions, final = jax.jit(jax.vmap(p.expert_episode))(keys)
  _, a3, f3 = jax.jit(p.expert_episode)(keys[3])
  np.testing.assert_allclose(actions[3], a3, atol=1e-6)
  np.testing.assert_allclose(final.box[3], f3.box, atol=1e-6)
  assert float(final.success.mean()) >= 0.95  # 0.9965 over 2,000 episodes
  assert float(jnp.abs(actions).max()) <= 1.0


def test_renderings():
  s = _state((0.1, 0.1), (0.53, 0.53), goal=(0.85, 0.2))
  img = np.asarray(jax.jit(p.render)(s, jax.random.key(1)))
  assert img.shape == (16, 16, 3)
  # Box centre at pixel (8, 8): pure green; background grey with noise sigma 0.03.
  np.testing.assert_allclose(img[8, 8], [0, 1, 0], atol=0.15)
  corner = img[13:, 8:12].reshape(-1, 3)
  assert abs(corner.mean() - 0.5) < 0.02 and 0.015 < corner.std() < 0.05
  shifted, observe = jax.jit(p.render_shifted), jax.jit(p.observe)
  a = np.asarray(shifted(s, jax.random.key(1), 3))
  b = np.asarray(shifted(s, jax.random.key(2), 3))
  assert np.abs(a - img).mean() > 0.05 and np.abs(a - b).max() > 0.1
  # A texture is a function of its id alone.
  for x, y in zip(p.texture(jnp.asarray(7)), p.texture(jnp.asarray(7))):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_allclose(observe(s, jax.random.key(1), jnp.asarray(-1)), img, atol=1e-6)
  np.testing.assert_allclose(observe(s, jax.random.key(1), jnp.asarray(3)), a, atol=1e-6)


def test_reset_respects_the_start_distribution():
  s = jax.jit(jax.vmap(p.reset))(jax.random.split(jax.random.key(0), 512))
  gb = np.linalg.norm(np.asarray(s.box - s.goal), axis=-1)
  assert ((gb > 0.2) & (gb < 0.45)).all()
  assert (np.linalg.norm(np.asarray(s.agent - s.box), axis=-1) > 0.15).all()
