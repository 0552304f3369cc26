"""Prompt-conditioned sequence policies: any NNX module `policy(prompts, responses) -> logits`.

The losses of `jaxpapers.rl` take log-probabilities; these two modules give them. Both map int
prompt ids `[N]` and response tokens `[N, T]` to logits `[N, T, V]` whose position t scores
`responses[:, t]` given the prompt and `responses[:, :t]` (already shifted), so
`sequence_logprob(policy(p, y), y, mask)` is log pi(y | p) for either.

* `FactorizedPolicy`: the toy policies of the RefEval and MRPO small-scale checks
  (arXiv 2602.16802 and 2602.16855, our CPU-scale protocols): a one-hot prompt through an MLP to
  independent per-position logits (the responses are not read: `autoregressive = False`).
* `LMPolicy`: the shared tiny transformer LM (`jaxpapers.nn.tiny_lm.TinyLM`) on
  `[prompt token, y_0, ..., y_{T-2}]`, read out on the V response tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.tiny_lm import TinyLM


class FactorizedPolicy(nnx.Module):
  """one_hot(prompt) -> Linear -> ReLU (per hidden layer) -> Linear -> `[T, V]` logits.

  Args:
    num_prompts: prompt ids are `0 .. num_prompts - 1`.
    length: response length T.
    vocab: response vocabulary V.
    hidden: hidden widths (empty: a linear table of logits per prompt).
    rngs: parameter initialization.
  """

  autoregressive = False

  def __init__(self, num_prompts: int, length: int, vocab: int, hidden: tuple[int, ...] = (64,), *,
               rngs: nnx.Rngs):
    self.num_prompts, self.length, self.vocab = num_prompts, length, vocab
    sizes = (num_prompts, *hidden)
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.out = nnx.Linear(sizes[-1], length * vocab, rngs=rngs)

  def __call__(self, prompts: jax.Array, responses: jax.Array | None = None) -> jax.Array:
    """`[N, T, V]` logits (the same whatever `responses` is)."""
    x = jax.nn.one_hot(prompts, self.num_prompts)
    for layer in self.hidden:
      x = jax.nn.relu(layer(x))
    return self.out(x).reshape(prompts.shape[0], self.length, self.vocab)


class LMPolicy(nnx.Module):
  """The shared tiny LM as an autoregressive response policy.

  The LM's vocabulary is the V response tokens followed by one token per prompt id; the input
  sequence is `[V + prompt, y_0, ..., y_{T-2}]`, and the logits at position t (restricted to the
  V response tokens) score y_t.

  Args:
    num_prompts: prompt ids are `0 .. num_prompts - 1`.
    length: response length T.
    vocab: response vocabulary V.
    d_model: LM width.
    num_layers: transformer blocks.
    num_heads: attention heads.
    rngs: parameter initialization.
  """

  autoregressive = True

  def __init__(self, num_prompts: int, length: int, vocab: int, *, d_model: int = 64,
               num_layers: int = 2, num_heads: int = 4, rngs: nnx.Rngs):
    self.num_prompts, self.length, self.vocab = num_prompts, length, vocab
    self.lm = TinyLM(vocab + num_prompts, d_model, num_layers,
                     mixer=lambda r: CausalSelfAttention(d_model, num_heads, rngs=r),
                     mlp_hidden=4 * d_model, rngs=rngs)

  def __call__(self, prompts: jax.Array, responses: jax.Array) -> jax.Array:
    """`[N, T, V]` logits; position t depends on `responses[:, :t]` only."""
    first = (self.vocab + prompts.astype(jnp.int32))[:, None]
    seq = jnp.concatenate([first, responses[:, :-1].astype(jnp.int32)], axis=1)
    return self.lm(seq)[..., :self.vocab]
