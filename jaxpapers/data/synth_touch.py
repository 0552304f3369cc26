"""`synth-touch`: unpaired glove and Xela-like tactile demonstrations over known hidden states.

The CPU stand-in for TactAlign's (arXiv 2602.13579, Sec. IV) human glove (OSMO, 3-axis magnetic
sensors at the fingertips) and robot (Xela, 4 x 4 taxels x 3 axes per fingertip) data. Both
sensors read one shared hidden contact state per fingertip and time step:

* contact flag `c`; normal force `f_n` in [0, 1]; shear `f_s` in R^2 with |f_s| <= 0.8 f_n;
* contact location on the pad `u` in [-1, 1]^2;
* fingertip position relative to the object `q` in R^3 (object frame: the surface is z = 0).

Task "pivot" (50-70 steps, parameters drawn per demo and finger): approach (c = 0, q descends
to the surface), press (f_n ramps to a target in [0.4, 0.9]), pivot (f_s grows along a random
direction to a fraction in [0.4, 0.8] of f_n, u drifts by up to 0.6), release (the force decays,
then the fingertip lifts). The fingertip pose follows the contact mechanics, which is what lets
pose-matched pairs carry tactile correspondence: the pad compresses (z = -0.15 f_n) and the
fingertip slides with the shear (xy = base + 0.3 f_s).

Sensors (our choices for the paper's hardware, whose physics the paper does not model):
* glove, 1 token of 3 dims per fingertip:
  `m = tanh(1.5 [f_sx, f_sy, f_n]) + 0.2 f_n [u_x, u_y, 0] + b_h + N(0, 0.02^2)`;
  human pose `q^h = 1.1 q + o_finger + N(0, 0.01^2)` (an embodiment scale and offset);
* Xela, 16 taxels x 3 dims (shear x, shear y, normal) per fingertip, taxel k at x_k on a 4 x 4
  grid over [-1, 1]^2 with `kappa_k = exp(-|x_k - u|^2 / (2 0.4^2))`:
  normal_k = 0.8 f_n kappa_k, shear_k = 0.8 f_s kappa_k, plus N(0, 0.02^2);
  robot pose `q^r = q + N(0, 0.005^2)`.

Everything is numpy and fixed by the seed. The expert action (for a behaviour-cloning policy)
is the fingertip displacement over the next `ACTION_HORIZON` steps, in the robot's (true) frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

FINGERS = 2
ACTION_HORIZON = 4
STAGES = ("approach", "press", "pivot", "release")
COMPLIANCE = 0.15  # pad compression per unit normal force (z = -COMPLIANCE f_n)
SLIDE = 0.3  # fingertip slide per unit shear
FINGER_XY = np.array([[-0.3, 0.0], [0.3, 0.0]])  # object-frame rest position of each finger
GLOVE_BIAS = np.array([[0.05, -0.03, 0.10], [-0.04, 0.02, 0.08]])  # b_h per finger
HUMAN_SCALE = 1.1
HUMAN_OFFSET = np.array([[0.04, -0.02, 0.03], [-0.03, 0.05, 0.02]])  # o_finger
TAXEL_GRID = 4
TAXEL_WIDTH = 0.4


def taxel_positions() -> np.ndarray:
  """The [16, 2] taxel centres x_k of the Xela pad, a 4 x 4 grid over [-1, 1]^2 (row major)."""
  g = np.linspace(-1.0, 1.0, TAXEL_GRID)
  yy, xx = np.meshgrid(g, g, indexing="ij")
  return np.stack([xx.ravel(), yy.ravel()], axis=-1)


@dataclasses.dataclass(frozen=True)
class TouchFrames:
  """Hidden states of N frames x K fingertips (the ground truth both sensors read).

  Attributes:
    contact: [N, K] bool, c.
    normal: [N, K] f_n.
    shear: [N, K, 2] f_s.
    location: [N, K, 2] u.
    position: [N, K, 3] q (object frame).
    demo: [N] demo index (-1 for play states).
    step: [N] time step in the demo.
    phase: [N] normalised time t / (T - 1).
    stage: [N, K] index into `STAGES` (-1 for play states).
    action: [N, K, ACTION_HORIZON, 3] displacement of q over the next steps (zeros for play).
  """

  contact: np.ndarray
  normal: np.ndarray
  shear: np.ndarray
  location: np.ndarray
  position: np.ndarray
  demo: np.ndarray
  step: np.ndarray
  phase: np.ndarray
  stage: np.ndarray
  action: np.ndarray

  def __len__(self) -> int:
    return len(self.demo)

  @property
  def force(self) -> np.ndarray:
    """[N, K, 3] (f_n, f_sx, f_sy)."""
    return np.concatenate([self.normal[..., None], self.shear], axis=-1)

  def take(self, index: np.ndarray) -> TouchFrames:
    """The frames at `index`."""
    return TouchFrames(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})


def _demo(rng: np.random.Generator, demo: int, min_steps: int, max_steps: int) -> dict[str, np.ndarray]:
  """One pivot demo: hidden states of both fingertips over its T steps."""
  steps = int(rng.integers(min_steps, max_steps + 1))
  k = FINGERS
  fractions = np.array([rng.uniform(0.2, 0.3), rng.uniform(0.15, 0.25), rng.uniform(0.3, 0.4)])
  ends = np.round(np.cumsum(fractions) * steps).astype(int)  # ends of approach, press, pivot
  target = rng.uniform(0.4, 0.9, k)
  angle = rng.uniform(0, 2 * np.pi, k)
  direction = np.stack([np.cos(angle), np.sin(angle)], -1)
  ratio = rng.uniform(0.4, 0.8, k)
  u0 = rng.uniform(-0.4, 0.4, (k, 2))
  drift_angle = angle + rng.normal(0, 0.5, k)
  drift = rng.uniform(0.2, 0.6, k)[:, None] * np.stack([np.cos(drift_angle), np.sin(drift_angle)], -1)
  z0 = rng.uniform(0.4, 0.8, k)
  base = FINGER_XY + rng.uniform(-0.1, 0.1, (k, 2))
  t = np.arange(steps)
  stage = np.searchsorted(ends, t, side="right")  # 0..3
  starts = np.concatenate([[0], ends])
  lengths = np.diff(np.concatenate([starts, [steps]]))
  s = (t - starts[stage] + 1) / np.maximum(lengths[stage], 1)  # progress in (0, 1] within a stage
  s = s[:, None]
  normal = np.zeros((steps, k))
  shear_scale = np.zeros((steps, k))  # |f_s| / (ratio f_n_target)
  drift_scale = np.zeros((steps, k))
  lift = np.zeros((steps, k))
  press, pivot, release = stage == 1, stage == 2, stage == 3
  normal[press] = (target * s)[press]
  normal[pivot] = target
  shear_scale[pivot] = np.broadcast_to(s, (steps, k))[pivot]
  drift_scale[pivot] = np.broadcast_to(s, (steps, k))[pivot]
  decay = np.clip(1.5 * s, 0, 1)  # the force decays over the first 2/3 of the release
  normal[release] = (target * (1 - decay))[release]
  shear_scale[release] = (1 - decay)[release]
  drift_scale[release] = 1.0
  lift[release] = np.clip(3 * s - 2, 0, 1)[release]
  shear = (ratio * target)[None, :, None] * shear_scale[..., None] * direction[None]
  location = np.clip(u0[None] + drift_scale[..., None] * drift[None], -1, 1)
  contact = normal > 1e-6
  approach = stage == 0
  z = -COMPLIANCE * normal
  z[approach] = (z0 * (1 - s))[approach] + 0.01
  z = z + 0.3 * lift
  xy = base[None] + SLIDE * shear
  position = np.concatenate([xy, z[..., None]], axis=-1)
  future = np.concatenate([position, np.repeat(position[-1:], ACTION_HORIZON, 0)], 0)
  action = np.stack([future[t + 1 + h] - position for h in range(ACTION_HORIZON)], axis=1)
  action = np.transpose(action, (0, 2, 1, 3))  # [T, K, H, 3]
  return dict(contact=contact, normal=normal, shear=shear, location=location, position=position,
              demo=np.full(steps, demo), step=t, phase=t / (steps - 1),
              stage=np.repeat(stage[:, None], k, 1), action=action)


def _concat(parts: list[dict[str, np.ndarray]]) -> TouchFrames:
  return TouchFrames(**{name: np.concatenate([p[name] for p in parts]) for name in parts[0]})


def pivot_demos(num_demos: int, seed: int, *, min_steps: int = 50, max_steps: int = 70) -> TouchFrames:
  """The frames of `num_demos` pivot demos (parameters drawn independently per demo), in order.

  Args:
    num_demos: demos to draw.
    seed: fixes every draw.
    min_steps: shortest demo (the spec's 50).
    max_steps: longest demo (the spec's 70).
  """
  if num_demos < 1 or not 4 <= min_steps <= max_steps:
    raise ValueError(f"pivot_demos needs num_demos >= 1 and 4 <= min_steps <= max_steps, got "
                     f"{num_demos}, {min_steps}, {max_steps}")
  rng = np.random.default_rng([seed, 0x70C4])
  return _concat([_demo(rng, d, min_steps, max_steps) for d in range(num_demos)])


def play_states(num: int, seed: int) -> TouchFrames:
  """`num` random hidden states ("play data" for encoder pre-training), 70% in contact."""
  rng = np.random.default_rng([seed, 0x9A7])
  k = FINGERS
  contact = rng.random((num, k)) < 0.7
  normal = rng.uniform(0.02, 1.0, (num, k)) * contact
  angle = rng.uniform(0, 2 * np.pi, (num, k))
  shear = (rng.uniform(0, 0.8, (num, k)) * normal)[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
  location = rng.uniform(-1, 1, (num, k, 2))
  z = np.where(contact, -COMPLIANCE * normal, rng.uniform(0.01, 0.8, (num, k)))
  xy = FINGER_XY[None] + rng.uniform(-0.1, 0.1, (num, k, 2)) + SLIDE * shear
  position = np.concatenate([xy, z[..., None]], -1)
  return TouchFrames(contact=contact, normal=normal, shear=shear, location=location,
                     position=position, demo=np.full(num, -1), step=np.zeros(num, int),
                     phase=np.zeros(num), stage=np.full((num, k), -1),
                     action=np.zeros((num, k, ACTION_HORIZON, 3)))


def glove_reading(frames: TouchFrames, seed: int, noise: float = 0.02) -> np.ndarray:
  """The human glove's [N, K, 1, 3] reading (one 3-axis token per fingertip)."""
  rng = np.random.default_rng([seed, 0x610E])
  force = np.stack([frames.shear[..., 0], frames.shear[..., 1], frames.normal], -1)
  pad = np.concatenate([frames.location, np.zeros(frames.normal.shape + (1,))], -1)
  m = np.tanh(1.5 * force) + 0.2 * frames.normal[..., None] * pad + GLOVE_BIAS
  m = m + rng.normal(0, noise, m.shape)
  return m[:, :, None, :].astype(np.float32)


def xela_reading(frames: TouchFrames, seed: int, noise: float = 0.02) -> np.ndarray:
  """The robot's [N, K, 16, 3] Xela reading (shear x, shear y, normal per taxel)."""
  rng = np.random.default_rng([seed, 0x3E1A])
  d2 = np.sum((taxel_positions()[None, None] - frames.location[:, :, None]) ** 2, -1)
  kappa = np.exp(-d2 / (2 * TAXEL_WIDTH ** 2))  # [N, K, 16]
  shear = 0.8 * frames.shear[:, :, None, :] * kappa[..., None]
  normal = 0.8 * frames.normal[:, :, None, None] * kappa[..., None]
  out = np.concatenate([shear, normal], -1)
  return (out + rng.normal(0, noise, out.shape)).astype(np.float32)


def human_pose(frames: TouchFrames, seed: int, noise: float = 0.01) -> np.ndarray:
  """The glove-tracked [N, K, 3] fingertip pose `1.1 q + o_finger + noise` (object frame)."""
  rng = np.random.default_rng([seed, 0x4A5])
  q = HUMAN_SCALE * frames.position + HUMAN_OFFSET
  return (q + rng.normal(0, noise, q.shape)).astype(np.float32)


def robot_pose(frames: TouchFrames, seed: int, noise: float = 0.005) -> np.ndarray:
  """The robot's [N, K, 3] fingertip pose `q + noise` (forward kinematics, object frame)."""
  rng = np.random.default_rng([seed, 0x2B0])
  return (frames.position + rng.normal(0, noise, frames.position.shape)).astype(np.float32)
