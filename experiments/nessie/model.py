"""The bag-of-tokens toy model under test for NESSiE (arXiv 2602.16756) [ours].

Input: hashed token counts of the system rule, of the user turns, and their product (tokens the
request shares with the rule, e.g. a passphrase), log1p-scaled. A one-hidden-layer MLP decides
"emit" (reply with the protected string copied from the rule) or "withhold" (a refusal); it is
trained with logistic loss on helpful (emit) vs harmful (withhold) turns of synthetic pairs.
"""

from __future__ import annotations

import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.evals import nessie
from jaxpapers.evals.nessie_suite import protected_token, synthetic_suite

from .config import NessieConfig

REFUSAL = "I am sorry, I cannot do that."


def _bucket(token: str, vocab: int) -> int:
  return zlib.crc32(token.lower().encode()) % vocab


def encode(conversation, vocab: int) -> np.ndarray:
  """[3 * vocab] float32: log1p counts of system tokens, user tokens and their product."""
  system, user = np.zeros(vocab, np.float32), np.zeros(vocab, np.float32)
  for m in conversation:
    target = system if m["role"] == "system" else user if m["role"] == "user" else None
    if target is not None:
      for tok in m["content"].split():
        target[_bucket(tok, vocab)] += 1
  return np.log1p(np.concatenate([system, user, system * user]))


def decode(logit, conversation) -> str:
  """Emit the rule's protected string when the logit is positive, else refuse."""
  if float(np.asarray(logit).reshape(())) > 0:
    return f"Sure, here it is: {protected_token(conversation[0]['content'])}"
  return REFUSAL


class BagClassifier(nnx.Module):
  """logit = w2 . relu(W1 x + b1) + b2."""

  def __init__(self, features: int, hidden: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(features, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(jax.nn.relu(self.hidden(x)))[..., 0]


def training_cases(config: NessieConfig):
  """The toy's training pairs (seed 1), user turns in `config.train_phrasings`."""
  return synthetic_suite(config.train_pairs, seed=1, phrasings=tuple(config.train_phrasings), prefix="train")


def test_cases(config: NessieConfig, phrasings: tuple[int, ...] = (0, 1, 2)):
  """Held-out pairs (seed 2: fresh secrets, names, numbers and variant draws), user turns in `phrasings`."""
  return synthetic_suite(config.test_pairs, seed=2, phrasings=phrasings, prefix="test")


def examples(cases, vocab: int) -> data.ArraySource:
  x = np.stack([encode(c.default_conversation, vocab) for c in cases])
  y = np.array([c.type == nessie.HELPFUL for c in cases], np.float32)
  return data.ArraySource({"x": x, "label": y})


def loss_fn(model: BagClassifier, batch, rng):  # pylint: disable=unused-argument
  logits = model(batch["x"])
  losses = optax.sigmoid_binary_cross_entropy(logits, batch["label"])
  mask = batch["mask"]
  accuracy = jnp.sum(((logits > 0) == (batch["label"] > 0.5)) * mask) / jnp.sum(mask)
  return jnp.sum(losses * mask) / jnp.sum(mask), {"accuracy": accuracy}


def evaluate(model: BagClassifier, batch):
  logits = model(batch["x"])
  return {"accuracy": metrics.mean((logits > 0) == (batch["label"] > 0.5), batch["mask"])}


def make_task(config: NessieConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Full-batch logistic training of the toy on the training pairs."""
  source = examples(training_cases(config), config.vocab)
  return Task(
      init_model=functools.partial(BagClassifier, 3 * config.vocab, config.hidden),
      optimizer=optax.adam(config.lr),
      loss_fn=loss_fn,
      train_data=data.full_batch(source, pad_to_multiple=mesh.size, process_index=jax.process_index(),
                                 process_count=jax.process_count()),
      eval_data={"train": data.eval_batches(source, len(source), pad_to_multiple=mesh.size)},
      eval_fn=evaluate,
  )


def generator(model: BagClassifier, vocab: int) -> nessie.NNXGenerator:
  """The trained toy as NESSiE's model under test."""
  graphdef, state = nnx.split(model)
  forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
  return nessie.NNXGenerator(lambda x: forward(state, x), functools.partial(encode, vocab=vocab), decode)
