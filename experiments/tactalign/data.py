"""synth-touch datasets of the TactAlign experiment, per fingertip sample.

Every frame of K fingertips becomes K samples (TactAlign encodes each fingertip separately with
one encoder per embodiment, and pairs index <-> index). Sets: the alignment demos (200 human, 100
robot), play states (encoder pre-training), held-out demos (evaluation), and the robot reading of
the human alignment demos' hidden states (only the oracle baseline B3 sees it).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from jaxpapers.data import synth_touch as st

from .config import DataConfig

TARE_FRAMES = 3  # readings averaged at the start of each demo (no contact) as the sensor's zero


@dataclasses.dataclass(frozen=True)
class Samples:
  """Per-fingertip samples of one domain.

  Attributes:
    tactile: [M, tokens, 3] readings.
    pose: [M, 3] fingertip pose (object frame, the domain's own scale).
    finger: [M] fingertip index.
    demo: [M] demo index (-1: play).
    phase: [M] normalised time in the demo.
    force: [M, 3] true (f_n, f_sx, f_sy).
    contact: [M] true contact flag.
    action: [M, horizon * 3] the expert's displacement of this fingertip.
  """

  tactile: np.ndarray
  pose: np.ndarray
  finger: np.ndarray
  demo: np.ndarray
  phase: np.ndarray
  force: np.ndarray
  contact: np.ndarray
  action: np.ndarray

  def __len__(self) -> int:
    return len(self.finger)


def per_finger(frames: st.TouchFrames, tactile: np.ndarray, pose: np.ndarray) -> Samples:
  """[N, K, ...] frames -> [N * K] samples (frame-major)."""
  n, k = frames.normal.shape
  rep = lambda a: np.repeat(a, k)  # noqa: E731
  return Samples(tactile=tactile.reshape(n * k, *tactile.shape[2:]), pose=pose.reshape(n * k, 3),
                 finger=np.tile(np.arange(k), n), demo=rep(frames.demo), phase=rep(frames.phase),
                 force=frames.force.reshape(n * k, 3), contact=frames.contact.reshape(n * k),
                 action=frames.action.reshape(n * k, -1))


def tared_magnitude(samples: Samples) -> np.ndarray:
  """Raw contact magnitude: |net normal reading - its value at the demo's start| per sample.

  The net normal reading sums the normal axis over the sensor's elements; the tare is the mean
  of the first `TARE_FRAMES` readings of the same demo and finger (the approach, no contact).
  Our choice: shear cannot exist without normal force here, and the shear axes only add noise.
  """
  normal = samples.tactile[..., 2].sum(-1)
  out = np.empty_like(normal)
  for d in np.unique(samples.demo):
    for f in np.unique(samples.finger):
      sel = np.flatnonzero((samples.demo == d) & (samples.finger == f))
      out[sel] = np.abs(normal[sel] - normal[sel[:TARE_FRAMES]].mean())
  return out


@dataclasses.dataclass(frozen=True)
class Datasets:
  human: Samples
  robot: Samples
  human_play: Samples
  robot_play: Samples
  human_eval: Samples
  robot_eval: Samples
  robot_of_human: Samples  # the Xela reading of the human alignment demos' hidden states (B3)


@functools.lru_cache(maxsize=4)
def datasets(config: DataConfig) -> Datasets:
  """All sets of `config` (cached: the stages and the evaluation share them)."""
  s = config.seed * 100
  human_frames = st.pivot_demos(config.human_demos, s + 1)
  robot_frames = st.pivot_demos(config.robot_demos, s + 2)
  human_eval = st.pivot_demos(config.eval_demos, s + 3)
  robot_eval = st.pivot_demos(config.eval_demos, s + 4)
  play = max(config.play, 1)
  human_play, robot_play = st.play_states(play, s + 5), st.play_states(play, s + 6)

  def human(frames, seed):
    return per_finger(frames, st.glove_reading(frames, seed), st.human_pose(frames, seed))

  def robot(frames, seed):
    return per_finger(frames, st.xela_reading(frames, seed), st.robot_pose(frames, seed))

  return Datasets(human=human(human_frames, s + 11), robot=robot(robot_frames, s + 12),
                  human_play=human(human_play, s + 15), robot_play=robot(robot_play, s + 16),
                  human_eval=human(human_eval, s + 13), robot_eval=robot(robot_eval, s + 14),
                  robot_of_human=robot(human_frames, s + 17))


def encoder_inputs(config: DataConfig, domain: str) -> np.ndarray:
  """Encoder pre-training readings of `domain` ("human" or "robot"): play plus alignment demos."""
  d = datasets(config)
  align, play = (d.human, d.human_play) if domain == "human" else (d.robot, d.robot_play)
  parts = [align.tactile] + ([play.tactile] if config.play else [])
  return np.concatenate(parts).astype(np.float32)
