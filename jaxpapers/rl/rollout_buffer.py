"""MRPO's online rollout buffer: oversample, filter collapsed groups, select, FIFO, fixed shapes.

GUI-Owl-1.5 / Mobile-Agent-v3.5 (arXiv 2602.16855, Sec. 4, MRPO) keeps groups whose rollouts all
succeed or all fail (zero group-relative advantage) away from the optimizer with an online
buffer, and alternates device-specific updates. The paper does not publish the selection rule;
this is ours, in its spirit (spec of the library): draw N >= G rollouts per task, drop the task
if its rewards are all equal, otherwise keep G of them with up to G/2 successes and the rest
failures, push the group into a FIFO, and emit an update batch when B groups are held (all of
one device, devices visited round-robin, with `alternate_devices`). With `filter_collapsed=False`
and N = G it is the plain GRPO batcher; with N = G and the filter, DAPO's dynamic sampling
(arXiv 2503.14476, Sec. 3.2).

Batches always have the shape `[B * G, T]` (and `[B * G]`, `[B]`), so a jitted update compiles
once.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

SELECTIONS = ("balanced", "all")


@dataclasses.dataclass
class _Group:
  device: int
  prompt: int
  tokens: np.ndarray  # [G, T]
  logp: np.ndarray  # [G, T]
  mask: np.ndarray  # [G, T]
  rewards: np.ndarray  # [G]
  advantages: np.ndarray  # [G]
  collapsed: bool


def select_rollouts(rewards: np.ndarray, group_size: int, select: str = "balanced",
                    success_threshold: float = 0.5) -> np.ndarray:
  """Indices of the G rollouts kept from one task's N (in the order they were drawn).

  "balanced": successes (reward >= `success_threshold`) and failures in arrival order, k_s =
  min(#successes, max(G // 2, G - #failures)) successes and G - k_s failures: up to G/2
  successes while failures suffice, more when they do not. "all": the first G.
  """
  rewards = np.asarray(rewards)
  if len(rewards) < group_size:
    raise ValueError(f"{len(rewards)} rollouts cannot fill a group of {group_size}")
  if select == "all":
    return np.arange(group_size)
  if select != "balanced":
    raise ValueError(f"select={select!r}; choose one of {', '.join(SELECTIONS)}")
  wins = np.flatnonzero(rewards >= success_threshold)
  losses = np.flatnonzero(rewards < success_threshold)
  k_s = min(len(wins), max(group_size // 2, group_size - len(losses)))
  return np.sort(np.concatenate([wins[:k_s], losses[:group_size - k_s]]))


def _advantages(rewards: np.ndarray, eps: float) -> tuple[np.ndarray, bool]:
  """`jaxpapers.rl.grpo.group_advantages` of one group, in NumPy (host side)."""
  rewards = rewards.astype(np.float32)
  if np.all(rewards == rewards[0]):
    return np.zeros_like(rewards), True
  return ((rewards - rewards.mean()) / (rewards.std() + eps)).astype(np.float32), False


class RolloutBuffer:
  """Host-side FIFO of selected rollout groups that emits fixed-shape update batches.

  Args:
    group_size: G, rollouts per group in a batch.
    batch_groups: B, groups per update batch.
    length: T, tokens per rollout.
    select: "balanced" (MRPO-style) or "all" (the first G).
    filter_collapsed: drop groups whose (selected) rewards are all equal.
    num_devices: device ids are `0 .. num_devices - 1`.
    alternate_devices: every batch holds groups of one device; devices take turns round-robin.
    capacity: most groups held (the oldest are evicted first); None: no limit.
    success_threshold: reward at or above which a rollout is a success (for "balanced").
    eps: added to the group standard deviation of the advantages.

  Attributes:
    rollouts_consumed: rollouts offered to `add` (kept or not): the sampling cost.
    groups_seen, groups_dropped, groups_evicted: groups offered, filtered out, evicted.
    updates: batches emitted by `pop`.
    batch_devices: the device of each emitted batch (-1: mixed devices).
  """

  def __init__(self, group_size: int, batch_groups: int, length: int, *, select: str = "balanced",
               filter_collapsed: bool = True, num_devices: int = 1, alternate_devices: bool = False,
               capacity: int | None = None, success_threshold: float = 0.5, eps: float = 1e-6):
    if select not in SELECTIONS:
      raise ValueError(f"select={select!r}; choose one of {', '.join(SELECTIONS)}")
    if min(group_size, batch_groups, length, num_devices) < 1:
      raise ValueError("group_size, batch_groups, length and num_devices must be >= 1")
    if capacity is not None and capacity < batch_groups:
      raise ValueError(f"capacity={capacity} cannot hold a batch of {batch_groups} groups")
    self.group_size, self.batch_groups, self.length = group_size, batch_groups, length
    self.select, self.filter_collapsed = select, filter_collapsed
    self.num_devices, self.alternate_devices = num_devices, alternate_devices
    self.capacity, self.success_threshold, self.eps = capacity, success_threshold, eps
    self._groups: collections.deque[_Group] = collections.deque()
    self._turn = 0
    self.rollouts_consumed = self.groups_seen = self.groups_dropped = self.groups_evicted = 0
    self.updates = 0
    self.batch_devices: list[int] = []

  def __len__(self) -> int:
    return len(self._groups)

  @property
  def next_device(self) -> int | None:
    """The device whose batch comes next (None without alternation)."""
    return self._turn if self.alternate_devices else None

  def add(self, prompts: np.ndarray, devices: np.ndarray, tokens: np.ndarray, logp: np.ndarray,
          mask: np.ndarray, rewards: np.ndarray) -> int:
    """Offers S tasks' N rollouts each; returns how many groups were kept.

    Args:
      prompts: `[S]` prompt ids.
      devices: `[S]` device ids.
      tokens: `[S, N, T]` transported token ids.
      logp: `[S, N, T]` behaviour log-probs.
      mask: `[S, N, T]` response masks.
      rewards: `[S, N]` outcome rewards.
    """
    tokens, logp, mask, rewards = (np.asarray(x) for x in (tokens, logp, mask, rewards))
    s, n = rewards.shape
    if tokens.shape != (s, n, self.length):
      raise ValueError(f"tokens have shape {tokens.shape}; expected {(s, n, self.length)}")
    self.rollouts_consumed += s * n
    kept = 0
    for i in range(s):
      self.groups_seen += 1
      idx = select_rollouts(rewards[i], self.group_size, self.select, self.success_threshold)
      adv, collapsed = _advantages(rewards[i, idx], self.eps)
      if collapsed and self.filter_collapsed:
        self.groups_dropped += 1
        continue
      self._groups.append(_Group(int(devices[i]), int(prompts[i]), tokens[i, idx], logp[i, idx],
                                 mask[i, idx], rewards[i, idx].astype(np.float32), adv, collapsed))
      kept += 1
      if self.capacity is not None and len(self._groups) > self.capacity:
        self._groups.popleft()
        self.groups_evicted += 1
    return kept

  def _candidates(self) -> list[int]:
    if not self.alternate_devices:
      return list(range(min(len(self._groups), self.batch_groups)))
    picked = [i for i, g in enumerate(self._groups) if g.device == self._turn]
    return picked[:self.batch_groups]

  def ready(self) -> bool:
    """Whether `pop` can emit a batch (B groups, of the current device with alternation)."""
    return len(self._candidates()) >= self.batch_groups

  def pop(self) -> dict[str, np.ndarray]:
    """The oldest B groups (of the current device) as one batch, removed from the buffer.

    Returns:
      {"prompts" [B G], "tokens" [B G, T], "logp" [B G, T], "mask" [B G, T], "rewards" [B G],
      "advantages" [B G], "devices" [B], "collapsed" [B]}.

    Raises:
      ValueError: not `ready()`.
    """
    picked = self._candidates()
    if len(picked) < self.batch_groups:
      raise ValueError(f"the buffer holds {len(picked)} usable groups; a batch needs "
                       f"{self.batch_groups} (call pop only when ready())")
    chosen = set(picked)
    groups = [self._groups[i] for i in picked]
    self._groups = collections.deque(g for i, g in enumerate(self._groups) if i not in chosen)
    g = self.group_size
    batch = {
        "prompts": np.repeat(np.array([x.prompt for x in groups], np.int32), g),
        "tokens": np.concatenate([x.tokens for x in groups]).astype(np.int32),
        "logp": np.concatenate([x.logp for x in groups]).astype(np.float32),
        "mask": np.concatenate([x.mask for x in groups]).astype(np.float32),
        "rewards": np.concatenate([x.rewards for x in groups]),
        "advantages": np.concatenate([x.advantages for x in groups]),
        "devices": np.array([x.device for x in groups], np.int32),
        "collapsed": np.array([x.collapsed for x in groups]),
    }
    devices = set(batch["devices"].tolist())
    self.batch_devices.append(devices.pop() if len(devices) == 1 else -1)
    self.updates += 1
    if self.alternate_devices:
      self._turn = (self._turn + 1) % self.num_devices
    return batch
