"""A seeded sparse second-order Markov token source with a known entropy floor.

The synthetic language of the loss-law runs of "Hardware Co-Design Scaling Laws via Roofline
Modelling for On-Device LLMs" (Sun et al., arXiv 2602.10377; our CPU-scale stand-in for its
10B-token trainings, section 4.3): token `x_t` depends on the two tokens before it,

  P(x_t = c | x_{t-2} = a, x_{t-1} = b) = p[a, b, j]   if c = s[a, b, j] (j < k), else 0,

with `k` successors `s[a, b]` drawn without replacement for every context `(a, b)` and their
probabilities `p[a, b] ~ Dirichlet(concentration)`. A model must learn the whole `V^2 x k`
table, so its loss falls with its capacity, down to the entropy rate

  H = sum_{a, b} pi(a, b) H(p[a, b])         (nats per token)

where `pi` is the stationary distribution of the pair chain `(a, b) -> (b, c)` (found by power
iteration, averaged over the last iterates so a periodic chain converges too). Windows start
from `pi`, so every window is a stationary stretch: the first target `x_1` has the conditional
entropy `H(x_1 | x_0)` under `pi`, every later one `H`; `Markov2Chain.floor(seq_len)` is the
mean of the two over a window, the lowest loss any model can reach on it.

The first-order, multi-domain document streams of `jaxpapers.data.documents` serve the
packing loaders; this module holds fixed-length windows (`Markov2Source`, a random-access source
for `jaxpapers.data.batches`), sampled vectorized across windows.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
  """Shannon entropy (nats) along `axis`, with 0 log 0 = 0."""
  logs = np.log(np.where(p > 0, p, 1.0))
  return -np.sum(p * logs, axis=axis)


@dataclasses.dataclass(frozen=True, eq=False)
class Markov2Chain:
  """A sparse second-order Markov chain over `vocab_size` tokens.

  Attributes:
    successors: int32 `[V, V, k]`: the tokens that may follow context `(a, b)`.
    probs: float64 `[V, V, k]`: their probabilities (rows sum to 1).
    stationary: float64 `[V, V]`: the stationary distribution of pairs `(x_{t-1}, x_t)`.
  """

  successors: np.ndarray
  probs: np.ndarray
  stationary: np.ndarray

  def __post_init__(self):
    s, p, pi = self.successors, self.probs, self.stationary
    v = s.shape[0]
    if s.ndim != 3 or s.shape[:2] != (v, v) or p.shape != s.shape or pi.shape != (v, v):
      raise ValueError(f"need successors and probs [V, V, k] and stationary [V, V]; got "
                       f"{s.shape}, {p.shape}, {pi.shape}")
    cdf = np.cumsum(p, axis=-1)
    cdf[..., -1] = 1.0
    object.__setattr__(self, "_cdf", cdf.reshape(v * v, -1))
    object.__setattr__(self, "_pair_cdf", np.cumsum(pi.reshape(-1)))

  def __repr__(self) -> str:
    return f"Markov2Chain(vocab_size={self.vocab_size}, branching={self.branching})"

  @property
  def vocab_size(self) -> int:
    return self.successors.shape[0]

  @property
  def branching(self) -> int:
    return self.successors.shape[2]

  @property
  def entropy_rate(self) -> float:
    """`H(x_t | x_{t-2}, x_{t-1})` under the stationary pair distribution (nats/token)."""
    return float(np.sum(self.stationary * _entropy(self.probs)))

  @property
  def first_entropy(self) -> float:
    """`H(x_1 | x_0)` of a stationary window's first target (nats)."""
    pi = self.stationary
    return float(_entropy(pi.reshape(-1)) - _entropy(pi.sum(1)))

  def floor(self, seq_len: int) -> float:
    """The lowest mean next-token loss over a stationary window of `seq_len` targets (nats)."""
    if seq_len < 1:
      raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    return (self.first_entropy + (seq_len - 1) * self.entropy_rate) / seq_len

  def sample(self, num_sequences: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """`num_sequences` stationary paths of `length` tokens (int32 `[n, length]`).

    The first pair is drawn from `stationary`, each next token from its context's row
    (inverse CDF), all sequences at once.
    """
    if length < 2:
      raise ValueError(f"length must be >= 2 (a pair starts every path), got {length}")
    v = self.vocab_size
    out = np.empty((num_sequences, length), np.int32)
    u = rng.random(num_sequences)
    first = np.minimum(np.searchsorted(self._pair_cdf, u, side="right"), v * v - 1)
    out[:, 0], out[:, 1] = first // v, first % v
    succ = self.successors.reshape(v * v, -1)
    k = self.branching
    for t in range(2, length):
      ctx = out[:, t - 2].astype(np.int64) * v + out[:, t - 1]
      j = np.minimum((rng.random(num_sequences)[:, None] >= self._cdf[ctx]).sum(-1), k - 1)
      out[:, t] = succ[ctx, j]
    return out


def stationary_pairs(successors: np.ndarray, probs: np.ndarray, *, iterations: int = 400,
                     average: int = 64) -> np.ndarray:
  """The stationary distribution of the pair chain `(a, b) -> (b, s[a, b, j])` w.p. `p[a, b, j]`.

  Power iteration from the uniform distribution, averaged over the last `average` iterates
  (the Cesaro mean, which converges for a periodic chain as well).
  """
  v, _, k = successors.shape
  a_b = np.arange(v * v)
  target = (a_b % v)[:, None] * v + successors.reshape(v * v, k)  # (b, c) of each transition
  target, weight = target.reshape(-1), probs.reshape(v * v, k)
  pi = np.full(v * v, 1.0 / (v * v))
  acc = np.zeros_like(pi)
  for i in range(iterations):
    pi = np.bincount(target, weights=(pi[:, None] * weight).reshape(-1), minlength=v * v)
    if i >= iterations - average:
      acc += pi
  acc /= acc.sum()
  return acc.reshape(v, v)


def markov2_chain(vocab_size: int = 256, branching: int = 4, concentration: float = 1.0,
                  seed: int = 0) -> Markov2Chain:
  """A random sparse second-order chain (the module docstring's construction).

  Args:
    vocab_size: tokens V, >= 2.
    branching: successors k of every context, in [1, V].
    concentration: Dirichlet concentration of every context's k probabilities, > 0 (small:
      peaked rows, a low entropy rate).
    seed: seed of the chain.
  """
  if vocab_size < 2:
    raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
  if not 1 <= branching <= vocab_size:
    raise ValueError(f"branching must be in [1, vocab_size={vocab_size}], got {branching}")
  if concentration <= 0:
    raise ValueError(f"concentration must be > 0, got {concentration}")
  rng = np.random.default_rng(seed)
  # k distinct successors per context: the first k of a random permutation (argsort of noise).
  keys = rng.random((vocab_size, vocab_size, vocab_size), dtype=np.float32)
  successors = np.argpartition(keys, branching - 1, axis=-1)[..., :branching].astype(np.int32)
  g = rng.gamma(concentration, size=(vocab_size, vocab_size, branching))
  sums = g.sum(-1, keepdims=True)
  probs = np.where(sums > 0, g / np.where(sums > 0, sums, 1.0), 1.0 / branching)
  return Markov2Chain(successors, probs, stationary_pairs(successors, probs))


class Markov2Source:
  """`num_sequences` stationary windows of a chain as next-token examples.

  Example `i` is `{"inputs": w[i, :-1], "targets": w[i, 1:]}` (int32 `[seq_len]`) for the
  paths `w = chain.sample(num_sequences, seq_len + 1, np.random.default_rng(seed))`, drawn once
  at construction (a seed fixes the source).

  Attributes:
    chain: the chain.
    seq_len: targets per window.
    tokens: int32 `[num_sequences, seq_len + 1]`, the sampled paths.
  """

  def __init__(self, chain: Markov2Chain, num_sequences: int, seq_len: int, *, seed: int = 0):
    if num_sequences < 1:
      raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    if seq_len < 1:
      raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    self.chain, self.seq_len = chain, seq_len
    self.tokens = chain.sample(num_sequences, seq_len + 1, np.random.default_rng(seed))

  @property
  def vocab_size(self) -> int:
    return self.chain.vocab_size

  @property
  def floor(self) -> float:
    """The chain's lowest mean loss over a window (`Markov2Chain.floor(seq_len)`)."""
    return self.chain.floor(self.seq_len)

  def __len__(self) -> int:
    return self.tokens.shape[0]

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = range(len(self))[index]
    return {k: v[0] for k, v in self.gather(np.array([index])).items()}

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The windows at `indices`, stacked."""
    w = self.tokens[np.asarray(indices, np.int64)]
    return {"inputs": w[:, :-1], "targets": w[:, 1:]}

  def __repr__(self) -> str:
    return f"Markov2Source(len={len(self)}, seq_len={self.seq_len}, chain={self.chain!r})"
