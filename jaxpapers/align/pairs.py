"""Pose-matched pseudo-pairs between unpaired human and robot tactile samples (TactAlign,
arXiv 2602.13579, Sec. III-B).

TactAlign pairs human and robot tactile observations by their hand-object interaction: similar
fingertip-versus-object configuration, not equal timestamps, only between demos of the same task,
object, reset and goal state, and keeps only contact-consistent pairs (contact -> contact,
no contact -> no contact). The pairs are noisy by design and built offline. The paper gives no
distance or neighbour rule; ours (the common choice):

1. features: each fingertip's object-frame pose (optionally standardised per domain and finger,
   which removes an embodiment's scale and offset, and optionally with a task-phase feature);
2. for each human sample, the nearest robot sample (Euclidean, k = 1, or all k nearest) of the
   same group (task/object/reset/goal) and the same finger;
3. contact state per sample: the raw tactile magnitude normalised by its domain's 99th
   percentile, against a threshold of 0.1 (`contact_state`, the paper's "normalized raw tactile
   magnitude ... computed separately for glove and robot data");
4. pairs whose contact states disagree are dropped;
5. the reverse direction too: for each robot sample its nearest human sample.

Nearest neighbours come from `scipy.spatial.cKDTree` (exact).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree


@dataclasses.dataclass(frozen=True)
class Pairs:
  """Index pairs into the human and robot sample sets.

  Attributes:
    human: [P] human sample indices.
    robot: [P] robot sample indices.
    forward: [P] bool, True for a human -> nearest robot pair, False for robot -> nearest human.
    dropped: pairs removed by the contact-consistency filter.
  """

  human: np.ndarray
  robot: np.ndarray
  forward: np.ndarray
  dropped: int = 0

  def __len__(self) -> int:
    return len(self.human)


def contact_state(magnitude: np.ndarray, percentile: float = 99.0, threshold: float = 0.1,
                  reference: np.ndarray | None = None) -> np.ndarray:
  """Contact flags from raw tactile magnitudes, normalised per domain.

  Args:
    magnitude: [N] raw tactile magnitudes of one domain (e.g. the norm of the reading minus its
      no-contact baseline).
    percentile: the magnitude that maps to 1.
    threshold: normalised magnitude above which a sample is in contact.
    reference: magnitudes the percentile is taken on (default: `magnitude` itself).
  """
  ref = np.asarray(magnitude if reference is None else reference, np.float64)
  scale = np.percentile(ref, percentile)
  if not scale > 0:
    raise ValueError(f"the {percentile}th percentile of the tactile magnitudes is {scale}: no "
                     "contact signal to normalise by")
  return np.clip(np.asarray(magnitude) / scale, 0, None) > threshold


def standardize_poses(pose: np.ndarray, finger: np.ndarray) -> np.ndarray:
  """Each finger's poses shifted and scaled to zero mean and unit variance per axis."""
  pose = np.asarray(pose, np.float64)
  out = np.empty_like(pose)
  for f in np.unique(finger):
    sel = finger == f
    out[sel] = (pose[sel] - pose[sel].mean(0)) / np.maximum(pose[sel].std(0), 1e-12)
  return out


def _groups(n: int, group: np.ndarray | None) -> np.ndarray:
  return np.zeros(n, np.int64) if group is None else np.asarray(group)


def _nearest(query: np.ndarray, query_keys: np.ndarray, base: np.ndarray, base_keys: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
  """(query index, nearest base index) for every query and its k nearest base samples with the
  same key (group, finger)."""
  qi, bi = [], []
  for key in np.unique(query_keys, axis=0):
    q = np.flatnonzero(np.all(query_keys == key, axis=1))
    b = np.flatnonzero(np.all(base_keys == key, axis=1))
    if len(b) == 0:
      continue
    kk = min(k, len(b))
    _, idx = cKDTree(base[b]).query(query[q], k=kk)
    idx = np.asarray(idx).reshape(len(q), kk)
    qi.append(np.repeat(q, kk))
    bi.append(b[idx.ravel()])
  if not qi:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)
  return np.concatenate(qi), np.concatenate(bi)


def pseudo_pairs(pose_h: np.ndarray, pose_r: np.ndarray, finger_h: np.ndarray, finger_r: np.ndarray,
                 contact_h: np.ndarray, contact_r: np.ndarray, *, group_h: np.ndarray | None = None,
                 group_r: np.ndarray | None = None, k: int = 1, both_directions: bool = True) -> Pairs:
  """Nearest-pose pairs of the same finger and group, contact-consistent (module docstring).

  Args:
    pose_h: [Nh, D] human matching features (object-frame fingertip pose, plus any extra
      feature such as a weighted task phase).
    pose_r: [Nr, D] robot matching features, in the same space.
    finger_h: [Nh] finger identity of each human sample.
    finger_r: [Nr] finger identity of each robot sample.
    contact_h: [Nh] bool contact states.
    contact_r: [Nr] bool contact states.
    group_h: [Nh] task/object/reset/goal group (None: one group).
    group_r: [Nr] the same for the robot samples.
    k: neighbours per sample (1: nearest; k > 1 keeps all k).
    both_directions: add robot -> nearest human pairs.

  Returns:
    The kept pairs, human -> robot ones first.
  """
  pose_h, pose_r = np.asarray(pose_h, np.float64), np.asarray(pose_r, np.float64)
  if pose_h.ndim != 2 or pose_r.ndim != 2 or pose_h.shape[1] != pose_r.shape[1]:
    raise ValueError(f"poses of shapes {pose_h.shape} and {pose_r.shape}: expected [N, D] features "
                     "of one dimension D")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  for name, a, n in (("finger_h", finger_h, len(pose_h)), ("contact_h", contact_h, len(pose_h)),
                     ("finger_r", finger_r, len(pose_r)), ("contact_r", contact_r, len(pose_r))):
    if len(a) != n:
      raise ValueError(f"{name} has {len(a)} entries for {n} samples")
  keys_h = np.stack([_groups(len(pose_h), group_h), np.asarray(finger_h)], 1)
  keys_r = np.stack([_groups(len(pose_r), group_r), np.asarray(finger_r)], 1)
  h, r = _nearest(pose_h, keys_h, pose_r, keys_r, k)
  forward = np.ones(len(h), bool)
  if both_directions:
    r2, h2 = _nearest(pose_r, keys_r, pose_h, keys_h, k)
    h, r = np.concatenate([h, h2]), np.concatenate([r, r2])
    forward = np.concatenate([forward, np.zeros(len(h2), bool)])
  keep = np.asarray(contact_h)[h] == np.asarray(contact_r)[r]
  return Pairs(h[keep], r[keep], forward[keep], int(np.sum(~keep)))


def random_pairs(num_human: int, num_robot: int, num_pairs: int, seed: int) -> Pairs:
  """Independent uniform pairs (standard rectified flow's coupling: TactAlign's baseline)."""
  rng = np.random.default_rng(seed)
  return Pairs(rng.integers(0, num_human, num_pairs), rng.integers(0, num_robot, num_pairs),
               np.ones(num_pairs, bool))
