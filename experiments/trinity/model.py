"""The tiny Trinity language-model task: AFMoE, bias balancing, optimizer, data (arXiv 2602.17004).

Loss: mean next-token cross-entropy over real targets of RSDB-packed (or sequentially packed)
documents, attention document-causal through segment ids. After every optimizer step the
trainer's hook updates each MoE layer's expert bias from that step's expert loads summed over
the whole global batch (SMEBU or the centered sign rule), outside autodiff.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers import optim
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.data import documents
from jaxpapers.data.packing import RSDB, SequentialPacker
from jaxpapers.nn.afmoe import AfmoeLM

from .config import TrinityConfig

EVAL_SEED = 10_007  # held-out documents come from another seed of the same stream


def document_stream(config: TrinityConfig, seed: int):
  data = config.data
  if data.corpus == "stdlib":
    return documents.StdlibDocuments(repeat=True)
  domains = documents.markov_domains(vocab_size=config.model.vocab_size, seed=0)
  return documents.MarkovDocuments(domains, seed=seed, length_mean=data.length_mean,
                                   length_sigma=data.length_sigma, max_len=data.max_len)


def make_loader(config: TrinityConfig, seed: int):
  """The packing loader of this process's rows (resumable: get_state / set_state)."""
  stream = document_stream(config, seed)
  common = dict(process_index=jax.process_index(), process_count=jax.process_count())
  if config.data.loader == "sequential":
    return SequentialPacker(stream, config.batch_size, config.seq_len, **common)
  return RSDB(stream, config.batch_size, config.seq_len, buffer_size=config.data.buffer_size,
              seed=seed, **common)


def make_optimizer(config: TrinityConfig) -> optax.GradientTransformation:
  """AdamW or Trinity's Muon/AdamW split, with warm-up and cosine decay to 0.1 x peak."""
  def schedule(peak):
    return optax.warmup_cosine_decay_schedule(0.0, peak, max(config.warmup_steps, 1),
                                              max(config.train.steps, config.warmup_steps + 1),
                                              end_value=0.1 * peak)
  if config.optimizer == "adamw":
    return optax.adamw(schedule(config.lr), b1=0.9, b2=0.95, weight_decay=config.weight_decay)
  adam_lr = config.adam_lr or config.lr
  return optim.muon(schedule(config.lr), adam_learning_rate=schedule(adam_lr),
                    weight_decay=config.weight_decay, adam_weight_decay=config.weight_decay)


def balancer(config: TrinityConfig) -> optax.GradientTransformation | None:
  if config.balancing == "smebu":
    return optim.smebu(config.balance_lr, config.balance_momentum, config.balance_kappa)
  if config.balancing == "sign":
    return optim.sign_bias_balancing(config.balance_lr)
  return None


def loss_fn(model: AfmoeLM, batch, rng):  # pylint: disable=unused-argument
  logits, counts = model(batch["inputs"], batch["segment_ids"], batch["segment_ids"] > 0)
  targets = jnp.maximum(batch["targets"], 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  loss = jnp.sum(losses * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)
  maxvio = optim.max_violation(counts)  # per MoE layer, on this step's global batch
  return loss, {"counts": counts, "maxvio": jnp.mean(maxvio), "maxvio_max": jnp.max(maxvio)}


def balance(model: AfmoeLM, aux, tx: optax.GradientTransformation | None):
  """Updates every MoE layer's expert bias from the step's global loads; returns metrics."""
  if tx is None:
    return {"bias_jitter": jnp.zeros(()), "bias_sum": jnp.zeros(())}
  jitter, total = [], []
  for layer, counts in zip(model.moe_layers(), aux["counts"]):
    state = tx.init(layer.expert_bias[...])
    if isinstance(state, optim.SmebuState):  # SMEBU's momentum lives beside the bias
      state = optim.SmebuState(layer.bias_momentum[...])
    update, state = tx.update(optim.load_excess(counts), state)
    layer.expert_bias[...] = optax.apply_updates(layer.expert_bias[...], update)
    if isinstance(state, optim.SmebuState):
      layer.bias_momentum[...] = state.momentum
    jitter.append(jnp.mean(jnp.abs(update)))
    total.append(jnp.abs(jnp.sum(layer.expert_bias[...])))
  return {"bias_jitter": jnp.mean(jnp.stack(jitter)), "bias_sum": jnp.max(jnp.stack(total))}


def eval_batches(config: TrinityConfig) -> list[dict[str, np.ndarray]]:
  """Held-out batches from documents of another seed."""
  loader = make_loader(config, EVAL_SEED)
  return [next(loader) for _ in range(config.data.eval_batches)]


def evaluate(model: AfmoeLM, batch) -> dict[str, Any]:
  """Token-weighted loss and the batch's mean MaxVio (averaged over the held-out batches)."""
  logits, counts = model(batch["inputs"], batch["segment_ids"], batch["segment_ids"] > 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                           jnp.maximum(batch["targets"], 0))
  return {"loss": metrics.mean(losses, batch["mask"]),
          "maxvio": jnp.mean(optim.max_violation(counts))}


def make_task(config: TrinityConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The tiny AFMoE LM's training task (`inputs` is unused: the experiment has one stage)."""
  tx = balancer(config)
  return Task(
      init_model=functools.partial(AfmoeLM, config.model),
      optimizer=make_optimizer(config),
      loss_fn=loss_fn,
      train_data=make_loader(config, config.train.seed),
      eval_data={"eval": eval_batches(config)},
      eval_fn=evaluate,
      after_update=lambda model, aux: balance(model, aux, tx),
  )
