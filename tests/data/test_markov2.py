"""The sparse second-order Markov source: structure, stationarity, entropy, determinism."""

import numpy as np
import pytest

from jaxpapers.data.markov2 import Markov2Source, markov2_chain, stationary_pairs


@pytest.fixture(scope="module")
def chain():
  return markov2_chain(vocab_size=24, branching=3, concentration=0.7, seed=5)


def test_rows_are_sparse_distributions_over_distinct_successors(chain):
  s = chain.successors
  assert s.shape == (24, 24, 3) and s.min() >= 0 and s.max() < 24
  assert all(len(set(row)) == 3 for row in s.reshape(-1, 3).tolist())
  np.testing.assert_allclose(chain.probs.sum(-1), 1.0)


def test_stationary_is_a_fixed_point_of_the_pair_chain(chain):
  v = chain.vocab_size
  pi = chain.stationary
  nxt = np.zeros((v, v))
  for a in range(v):
    for b in range(v):
      for j in range(chain.branching):
        nxt[b, chain.successors[a, b, j]] += pi[a, b] * chain.probs[a, b, j]
  np.testing.assert_allclose(nxt, pi, atol=1e-10)
  assert pi.sum() == pytest.approx(1.0)


def test_entropy_rate_matches_the_empirical_log_loss(chain):
  """The mean -log p(x_t | x_{t-2}, x_{t-1}) of sampled paths estimates the entropy rate."""
  paths = chain.sample(4000, 60, np.random.default_rng(0))
  v = chain.vocab_size
  table = np.zeros((v, v, v))
  for a in range(v):
    for b in range(v):
      table[a, b, chain.successors[a, b]] = chain.probs[a, b]
  p = table[paths[:, :-2], paths[:, 1:-1], paths[:, 2:]]
  assert p.min() > 0  # every sampled transition is one of the chain's
  assert -np.log(p).mean() == pytest.approx(chain.entropy_rate, rel=0.02)
  # windows start stationary: the first token's frequencies follow pi's marginal
  first = np.bincount(paths[:, 0], minlength=v) / len(paths)
  assert np.abs(first - chain.stationary.sum(1)).sum() < 0.12
  assert chain.floor(1) == pytest.approx(chain.first_entropy)
  assert chain.floor(100) == pytest.approx((chain.first_entropy + 99 * chain.entropy_rate) / 100)


def test_periodic_chain_converges_in_the_cesaro_mean():
  # one successor each, a deterministic cycle over pairs: stationary = uniform over the cycle
  succ = np.zeros((2, 2, 1), np.int32)
  succ[0, 0, 0], succ[0, 1, 0], succ[1, 1, 0], succ[1, 0, 0] = 1, 1, 0, 0
  pi = stationary_pairs(succ, np.ones((2, 2, 1)), iterations=101, average=64)
  np.testing.assert_allclose(pi, np.full((2, 2), 0.25), atol=0.01)


def test_source_windows_and_determinism(chain):
  src = Markov2Source(chain, 10, 7, seed=3)
  assert len(src) == 10 and src.vocab_size == 24
  ex = src[4]
  np.testing.assert_array_equal(ex["inputs"][1:], ex["targets"][:-1])
  assert ex["inputs"].shape == (7,) and ex["inputs"].dtype == np.int32
  np.testing.assert_array_equal(Markov2Source(chain, 10, 7, seed=3).tokens, src.tokens)
  assert not np.array_equal(Markov2Source(chain, 10, 7, seed=4).tokens, src.tokens)
  np.testing.assert_array_equal(markov2_chain(24, 3, 0.7, seed=5).successors, chain.successors)
  with pytest.raises(ValueError, match="branching"):
    markov2_chain(4, 5)
