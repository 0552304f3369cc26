"""SeqBandit: a one-step sequence bandit with a rare exact-match reward, vectorized in JAX.

The environment of our CPU-scale check of MRPO (GUI-Owl-1.5 / Mobile-Agent-v3.5, arXiv
2602.16855, Sec. 4; the small-scale protocol of experiments/mrpo): P tasks, each with a hidden
target sequence of L tokens over a vocabulary of V per device d (the device id changes the
target: a device-conditioned policy). A response earns reward 1 only when it equals the target
exactly, so a uniform policy succeeds with probability V^-L and most GRPO groups collapse
(all rewards 0). A prompt id is `task * num_devices + device`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SeqBandit:
  """Targets `[P, D, L]` and the reward and exact-success helpers.

  Attributes:
    targets: `[num_tasks, num_devices, length]` int32 target sequences.
  """

  targets: jax.Array

  @property
  def num_tasks(self) -> int:
    return self.targets.shape[0]

  @property
  def num_devices(self) -> int:
    return self.targets.shape[1]

  @property
  def length(self) -> int:
    return self.targets.shape[2]

  @property
  def num_prompts(self) -> int:
    return self.num_tasks * self.num_devices

  def prompt_ids(self, tasks: jax.Array, devices: jax.Array) -> jax.Array:
    """`[N]` prompt ids of (task, device) pairs."""
    return tasks * self.num_devices + devices

  def split_prompts(self, prompts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(tasks, devices) of prompt ids."""
    return prompts // self.num_devices, prompts % self.num_devices

  def target_of(self, prompts: jax.Array) -> jax.Array:
    """`[N, L]` targets of prompt ids."""
    tasks, devices = self.split_prompts(prompts)
    return self.targets[tasks, devices]

  def reward(self, prompts: jax.Array, tokens: jax.Array) -> jax.Array:
    """`[N]` float32 1 where `tokens [N, L]` equal the prompt's target exactly, else 0."""
    return jnp.all(tokens == self.target_of(prompts), axis=-1).astype(jnp.float32)


def make_seq_bandit(num_tasks: int, length: int, vocab: int, num_devices: int = 1,
                    seed: int = 0) -> SeqBandit:
  """Targets drawn uniformly (NumPy, seeded), a different one per task and device."""
  if min(num_tasks, length, vocab, num_devices) < 1:
    raise ValueError("num_tasks, length, vocab and num_devices must be >= 1")
  rng = np.random.default_rng(seed)
  targets = rng.integers(0, vocab, (num_tasks, num_devices, length)).astype(np.int32)
  return SeqBandit(jnp.asarray(targets))
