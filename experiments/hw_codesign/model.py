"""The tiny LMs of the loss law: AFMoE-family models on the second-order Markov stream.

One model family for dense and MoE (`jaxpapers.nn.afmoe.AfmoeLM`): causal RoPE attention over
the whole window (every layer local with the window = seq_len, no global NoPE layer), gated
attention and sandwich norms; a dense SwiGLU FFN of width r d in every layer (E = 1), or in
every layer a sigmoid-routed MoE of E experts of width r d / granularity, top K, no shared
expert, trained with the sequence-wise balance loss. Next-token cross-entropy, AdamW with a
linear warm-up and a cosine decay.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxpapers.core.metrics import mean
from jaxpapers.core.train import Task
from jaxpapers.data import batches, eval_batches
from jaxpapers.data.markov2 import Markov2Source, markov2_chain
from jaxpapers.nn.afmoe import AfmoeConfig, AfmoeLM
from jaxpapers.roofline.arch import Arch

from .config import DataConfig, HwCodesignConfig, ModelConfig


def afmoe_config(model: ModelConfig, data: DataConfig) -> AfmoeConfig:
  """The AfmoeLM of one sweep configuration."""
  heads = model.d_model // model.head_dim
  moe = model.num_experts > 1
  return AfmoeConfig(
      vocab_size=data.vocab_size, d_model=model.d_model, num_layers=model.num_layers,
      num_dense_layers=0 if moe else model.num_layers, num_heads=heads, num_kv_heads=heads,
      head_dim=model.head_dim, dense_width=model.dense_width, num_experts=model.num_experts,
      top_k=model.top_k, expert_width=model.expert_width, num_shared=0, window=data.seq_len,
      global_every=model.num_layers + 1, dispatch=model.dispatch)


def arch_of(model: ModelConfig, data: DataConfig) -> Arch:
  """The roofline `Arch` of the AfmoeLM (its parameter count equals the model's)."""
  c = afmoe_config(model, data)
  moe = c.num_dense_layers < c.num_layers
  return Arch(d_model=c.d_model, num_layers=c.num_layers, num_heads=c.num_heads,
              num_kv_heads=c.num_kv_heads, head_dim=c.head_dim, ffn=c.dense_width,
              num_experts=c.num_experts if moe else 1, top_k=c.top_k if moe else 1,
              expert_ffn=c.expert_width if moe else 0, num_shared=c.num_shared if moe else 0,
              dense_layers=c.num_dense_layers if moe else 0, vocab=c.vocab_size, tied=False,
              attn_gate=True, qk_norm=True, norms_per_layer=4, final_norm=True)


@functools.lru_cache(maxsize=4)
def _chain(data: DataConfig):
  return markov2_chain(data.vocab_size, data.branching, data.concentration, data.chain_seed)


@functools.lru_cache(maxsize=4)
def sources(data: DataConfig) -> tuple[Markov2Source, Markov2Source]:
  """(training, held-out) windows of the chain (cached: every sweep run reads the same)."""
  chain = _chain(data)
  return (Markov2Source(chain, data.train_sequences, data.seq_len, seed=data.data_seed),
          Markov2Source(chain, data.eval_sequences, data.seq_len, seed=data.data_seed + 1))


def entropy_floor(data: DataConfig) -> float:
  """The lowest mean loss per window of the chain (nats/token)."""
  return _chain(data).floor(data.seq_len)


def make_optimizer(config: HwCodesignConfig) -> optax.GradientTransformation:
  steps = config.train.steps
  warmup = min(config.warmup_steps, steps - 1)
  schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, max(warmup, 1), steps)
  return optax.adamw(schedule, weight_decay=config.weight_decay)


def _cross_entropy(logits, targets):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def loss_fn(model: AfmoeLM, batch, rng, *, balance: float):  # pylint: disable=unused-argument
  logits, stats = model.call_with_stats(batch["inputs"])
  ce = jnp.mean(_cross_entropy(logits, batch["targets"]))
  balance_loss = jnp.sum(stats.balance_loss)
  return ce + balance * balance_loss, {"ce": ce, "balance_loss": balance_loss}


def evaluate(model: AfmoeLM, batch):
  logits, _ = model(batch["inputs"])
  per_row = jnp.mean(_cross_entropy(logits, batch["targets"]), axis=-1)
  return {"loss": mean(per_row, batch["mask"])}


def make_task(config: HwCodesignConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The Task of `config.model` on `config.data`."""
  train, held_out = sources(config.data)
  size = int(np.prod(mesh.devices.shape))
  return Task(
      init_model=lambda rngs: AfmoeLM(afmoe_config(config.model, config.data), rngs=rngs),
      optimizer=make_optimizer(config),
      loss_fn=functools.partial(loss_fn, balance=config.balance_loss),
      train_data=batches(train, config.batch_size, seed=config.train.seed, pad_to_multiple=size),
      eval_data={"test": eval_batches(held_out, 64, pad_to_multiple=size)},
      eval_fn=evaluate,
  )
