"""push2d: a planar box-pushing task, pure-functional and `jax.vmap`-able.

The CPU-scale stand-in for the manipulation tasks of FRAPPE (arXiv 2602.17259, Sec. 4: RoboTwin
"Easy" vs "Hard" scenes). An agent disc (radius 0.04) moves in the arena [0, 1]^2 with velocity
actions in [-1, 1]^2 scaled by 0.04 per step and pushes a square box (half-size 0.06)
kinematically: when the moved agent penetrates the box, the box is translated out along the
penetration normal by the overlap. An episode lasts 40 steps and succeeds when the box centre
comes within 0.07 of the goal at any step.

Observations are a 16 x 16 x 3 image (red agent, green box, blue goal ring, anti-aliased over
one pixel) plus the agent's xy position. Two renderings:

* in distribution ("Easy"): grey background with pixel noise sigma 0.03;
* shifted ("Hard"): a background colour and a 2-pixel stripe texture chosen by a texture id,
  two distractor blobs, global brightness x U(0.7, 1.3), and the same pixel noise.

Every function works on one state; batch with `jax.vmap`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

AGENT_RADIUS = 0.04
BOX_HALF = 0.06
GOAL_RADIUS = 0.08
STEP_SCALE = 0.04
SUCCESS_RADIUS = 0.07
EPISODE_STEPS = 40
IMAGE_SIZE = 16
PIXEL_NOISE = 0.03
EXPERT_NOISE = 0.05
WAYPOINT_BACK = 0.1

RED = jnp.array([1.0, 0.0, 0.0])
GREEN = jnp.array([0.0, 1.0, 0.0])
BLUE = jnp.array([0.0, 0.0, 1.0])


class State(NamedTuple):
  """One episode's state (arrays; a batch of them under `vmap`).

  Attributes:
    agent: agent centre [2].
    box: box centre [2].
    goal: goal centre [2].
    t: steps taken.
    success: whether the box has been within `SUCCESS_RADIUS` of the goal.
  """

  agent: jax.Array
  box: jax.Array
  goal: jax.Array
  t: jax.Array
  success: jax.Array


def _reached(box: jax.Array, goal: jax.Array) -> jax.Array:
  return jnp.linalg.norm(box - goal) < SUCCESS_RADIUS


def reset(key: jax.Array) -> State:
  """A random start: goal in [0.15, 0.85]^2, box 0.2-0.45 from it, agent >= 0.15 from the box.

  Rejection sampling over 32 candidates, vectorised (the first valid one; the last if none is).
  """
  kg, kb, ka = jax.random.split(key, 3)
  n = 32
  goal = jax.random.uniform(kg, (n, 2), minval=0.15, maxval=0.85)
  box = jax.random.uniform(kb, (n, 2), minval=0.2, maxval=0.8)
  agent = jax.random.uniform(ka, (n, 2), minval=0.1, maxval=0.9)
  gb = jnp.linalg.norm(box - goal, axis=-1)
  ok = (gb > 0.2) & (gb < 0.45) & (jnp.linalg.norm(agent - box, axis=-1) > 0.15)
  i = jnp.where(ok.any(), jnp.argmax(ok), n - 1)
  return State(agent[i], box[i], goal[i], jnp.zeros((), jnp.int32), _reached(box[i], goal[i]))


def push_box(agent: jax.Array, box: jax.Array) -> jax.Array:
  """The box after the kinematic push by an agent at `agent` (translated out of the overlap)."""
  closest = jnp.clip(agent, box - BOX_HALF, box + BOX_HALF)
  d = agent - closest
  dist = jnp.linalg.norm(d)
  outside = dist > 1e-9
  normal = -d / jnp.where(outside, dist, 1.0)
  moved_out = box + normal * jnp.maximum(AGENT_RADIUS - dist, 0.0)
  # Agent centre inside the box: push along the axis of least penetration.
  rel = box - agent
  depth = BOX_HALF + AGENT_RADIUS - jnp.abs(rel)
  axis = jnp.argmin(depth)
  sign = jnp.where(rel >= 0, 1.0, -1.0)
  moved_in = box + jax.nn.one_hot(axis, 2) * depth * sign
  new = jnp.where(outside, moved_out, moved_in)
  return jnp.clip(new, BOX_HALF, 1.0 - BOX_HALF)


def step(state: State, action: jax.Array) -> State:
  """One step: agent += 0.04 clip(action), then the push; success is sticky."""
  agent = jnp.clip(state.agent + STEP_SCALE * jnp.clip(action, -1.0, 1.0), AGENT_RADIUS,
                   1.0 - AGENT_RADIUS)
  box = push_box(agent, state.box)
  return State(agent, box, state.goal, state.t + 1, state.success | _reached(box, state.goal))


def _unit(v: jax.Array) -> jax.Array:
  return v / jnp.maximum(jnp.linalg.norm(v), 1e-9)


def expert_action(state: State, key: jax.Array | None = None,
                  noise: float = EXPERT_NOISE) -> jax.Array:
  """The scripted expert: reach the point 0.1 behind the box on the goal->box line, then push.

  An agent not yet behind the box first goes round its side (to 0.18 beside it, then to a corner
  0.13 behind and 0.16 beside it), so it does not push the box on the way.
  It stops once the box is within 0.03 of the goal. Gaussian noise (sigma `noise`) is added when
  `key` is given; the action is clipped to [-1, 1].
  """
  direction = _unit(state.goal - state.box)
  perp = jnp.array([-direction[1], direction[0]])
  waypoint = state.box - WAYPOINT_BACK * direction
  rel = state.agent - state.box
  along, across = jnp.dot(rel, direction), jnp.dot(rel, perp)
  pushing = (along < -0.05) & (along > -0.13) & (jnp.abs(across) < 0.02)
  push = _unit(direction - 3.0 * across * perp / 0.1)
  side = jnp.where(across >= 0, 1.0, -1.0)
  beside = state.box + side * 0.18 * perp  # on the goal side: first go round to the box's side
  behind_corner = state.box + side * 0.16 * perp - 0.13 * direction  # then behind it
  target = jnp.where(along > 0.0, beside, jnp.where(along > -0.07, behind_corner, waypoint))
  reach = (target - state.agent) / STEP_SCALE
  reach = reach / jnp.maximum(jnp.linalg.norm(reach), 1.0)
  action = jnp.where(pushing, push, reach)
  action = jnp.where(jnp.linalg.norm(state.box - state.goal) < 0.03, 0.0, action)
  if key is not None:
    action = action + noise * jax.random.normal(key, (2,))
  return jnp.clip(action, -1.0, 1.0)


def expert_episode(key: jax.Array, noise: float = EXPERT_NOISE) -> tuple[State, jax.Array, State]:
  """One expert episode from `reset(key)`.

  Returns:
    (states [EPISODE_STEPS] before each action, actions [EPISODE_STEPS, 2], final state).
  """
  k_reset, k_noise = jax.random.split(key)

  def body(state, k):
    a = expert_action(state, k, noise)
    return step(state, a), (state, a)

  final, (states, actions) = jax.lax.scan(body, reset(k_reset),
                                          jax.random.split(k_noise, EPISODE_STEPS))
  return states, actions, final


# ------------------------------------------------------------------ rendering

def _pixel_centres() -> jax.Array:
  c = (jnp.arange(IMAGE_SIZE, dtype=jnp.float32) + 0.5) / IMAGE_SIZE
  x, y = jnp.meshgrid(c, c, indexing="xy")
  return jnp.stack([x, y], -1)  # [H, W, 2]: column = x, row = y


def _coverage(sdf: jax.Array) -> jax.Array:
  """Anti-aliased coverage of a shape from its signed distance (one pixel of ramp)."""
  return jnp.clip(0.5 - sdf * IMAGE_SIZE, 0.0, 1.0)[..., None]


def _paint(image: jax.Array, alpha: jax.Array, colour: jax.Array) -> jax.Array:
  return image * (1 - alpha) + colour * alpha


def _objects(image: jax.Array, state: State) -> jax.Array:
  p = _pixel_centres()
  ring = jnp.abs(jnp.linalg.norm(p - state.goal, axis=-1) - GOAL_RADIUS) - 0.02
  image = _paint(image, _coverage(ring), BLUE)
  square = jnp.max(jnp.abs(p - state.box), axis=-1) - BOX_HALF
  image = _paint(image, _coverage(square), GREEN)
  disc = jnp.linalg.norm(p - state.agent, axis=-1) - AGENT_RADIUS
  return _paint(image, _coverage(disc), RED)


def render(state: State, key: jax.Array) -> jax.Array:
  """The in-distribution image [16, 16, 3]: grey background, pixel noise sigma 0.03."""
  image = _objects(jnp.full((IMAGE_SIZE, IMAGE_SIZE, 3), 0.5), state)
  return image + PIXEL_NOISE * jax.random.normal(key, image.shape)


def texture(texture_id: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Texture `texture_id`: (background colour, stripe colour, vertical flag, stripe phase)."""
  k = jax.random.fold_in(jax.random.key(20_260_219), texture_id)
  k1, k2, k3, k4 = jax.random.split(k, 4)
  return (jax.random.uniform(k1, (3,), minval=0.15, maxval=0.85),
          jax.random.uniform(k2, (3,), minval=0.15, maxval=0.85),
          jax.random.bernoulli(k3), jax.random.randint(k4, (), 0, 4))


def render_shifted(state: State, key: jax.Array, texture_id: jax.Array) -> jax.Array:
  """The shifted image: textured background, two distractor blobs, brightness x U(0.7, 1.3).

  The texture (colours, orientation, phase) is a function of `texture_id`; the distractors'
  places and colours, the brightness and the pixel noise are drawn from `key`.
  """
  bg, stripe, vertical, phase = texture(texture_id)
  idx = jnp.arange(IMAGE_SIZE)
  rows, cols = jnp.meshgrid(idx, idx, indexing="ij")
  lines = jnp.where(vertical, cols, rows)
  on = (((lines + phase) // 2) % 2 == 1)[..., None]
  image = jnp.where(on, stripe, bg)
  k_pos, k_col, k_bright, k_noise = jax.random.split(key, 4)
  centres = jax.random.uniform(k_pos, (2, 2), minval=0.05, maxval=0.95)
  colours = jax.random.uniform(k_col, (2, 3))
  p = _pixel_centres()
  for i in range(2):
    blob = jnp.linalg.norm(p - centres[i], axis=-1) - 0.05
    image = _paint(image, _coverage(blob), colours[i])
  image = _objects(image, state)
  image = image * jax.random.uniform(k_bright, (), minval=0.7, maxval=1.3)
  return image + PIXEL_NOISE * jax.random.normal(k_noise, image.shape)


def observe(state: State, key: jax.Array, texture_id: jax.Array | None = None) -> jax.Array:
  """`render` (texture_id None or negative) or `render_shifted`, traceable in `texture_id`."""
  if texture_id is None:
    return render(state, key)
  return jax.lax.cond(texture_id < 0, lambda: render(state, key),
                      lambda: render_shifted(state, key, texture_id))
