"""sequence_logprob / token_logprobs against a NumPy log-softmax."""

import numpy as np

from jaxpapers import rl


def _numpy_logsoftmax(x):
  x = x.astype(np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_token_and_sequence_logprobs_match_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
  tokens = rng.integers(0, 7, (3, 5))
  mask = (rng.random((3, 5)) < 0.7).astype(np.float32)
  ref = np.take_along_axis(_numpy_logsoftmax(logits), tokens[..., None], -1)[..., 0]
  np.testing.assert_allclose(rl.token_logprobs(logits, tokens), ref, atol=1e-5)
  np.testing.assert_allclose(rl.sequence_logprob(logits, tokens, mask), (ref * mask).sum(-1), atol=1e-5)
  np.testing.assert_allclose(rl.sequence_logprob(logits, tokens), ref.sum(-1), atol=1e-5)


def test_position_t_scores_token_t_the_caller_shifts():
  """A one-hot logit at position t on token tokens[t] makes that position's log-prob ~0."""
  tokens = np.array([[2, 0, 1]])
  logits = np.full((1, 3, 3), -30.0, np.float32)
  logits[0, np.arange(3), tokens[0]] = 30.0
  assert float(rl.sequence_logprob(logits, tokens)[0]) > -1e-6
  assert float(rl.sequence_logprob(logits, np.roll(tokens, 1, 1))[0]) < -50
