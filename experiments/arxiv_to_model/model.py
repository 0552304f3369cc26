"""The LLaMA-style decoder of ArXiv-to-Model (arXiv 2602.17288; authors' train/config.json: HF
LlamaForCausalLM) from the shared NNX pieces, and its training task.

  x = E[tokens];  per block: x += Attn(RMSNorm(x)),  x += SwiGLU(RMSNorm(x));  logits = RMSNorm(x) W_head
Attention is plain multi-head (as many KV heads as heads) with RoPE (theta 10,000), no biases
anywhere, RMSNorm eps 1e-6, untied embeddings, every weight N(0, 0.02). Parameters per block:
4 d^2 (q, k, v, o) + 3 d F (SwiGLU) + 2 d (norms); the final norm adds d, the embeddings and the
head 2 V d.

Training follows the authors' train/train.py: each document is tokenized as [BOS] text [EOS],
truncated to `context + 1` tokens and padded; pads are masked out of the loss (the authors pad
with EOS and mask every EOS; here [PAD] is its own token, so the real [EOS] is learned).
AdamW with linear warm-up and cosine decay, gradient-norm clipping.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data as data_lib
from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.nn import SwiGLU, TinyLM
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.text import tokenizer as tok_lib

from . import data as corpus_lib
from .config import ArxivToModelConfig, ModelConfig


def block_params(m: ModelConfig) -> int:
  """Parameters of one decoder block: 4 d^2 + 3 d F + 2 d."""
  return 4 * m.d_model**2 + 3 * m.d_model * m.ffn + 2 * m.d_model


def param_count(m: ModelConfig, vocab: int) -> dict[str, int]:
  """The formula's counts: blocks, final norm, embeddings (input + untied output), total."""
  blocks = m.num_layers * block_params(m)
  embeddings = 2 * vocab * m.d_model
  return {"blocks": blocks, "final_norm": m.d_model, "embeddings": embeddings,
          "total": blocks + m.d_model + embeddings}


def abstract_param_count(m: ModelConfig, vocab: int) -> int:
  """Parameters of `build_model(m, vocab)` counted from an abstract init (nothing allocated)."""
  abstract = nnx.eval_shape(lambda: build_model(m, vocab, nnx.Rngs(0)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def vocab_of(config: ArxivToModelConfig, tokenizer_size: int) -> int:
  return config.model.vocab_size or tokenizer_size


def build_model(m: ModelConfig, vocab: int, rngs: nnx.Rngs) -> TinyLM:
  """The decoder: `TinyLM` with RoPE attention and SwiGLU, every weight matrix N(0, init_std)."""
  model = TinyLM(vocab, m.d_model, m.num_layers,
                 mixer=lambda r: CausalSelfAttention(m.d_model, m.num_heads, rope_theta=m.rope_theta, rngs=r),
                 mlp=lambda r: SwiGLU(m.d_model, m.ffn, init_std=m.init_std, rngs=r),
                 mlp_hidden=m.ffn, embed_std=m.init_std, head_bias=False, norm_eps=m.norm_eps,
                 scan_layers=m.scan_layers, rngs=rngs)
  init = nnx.initializers.normal(m.init_std)
  for _, module in nnx.iter_graph(model):  # HF LLaMA's initializer_range for the attention and head too
    if isinstance(module, nnx.Linear):
      module.kernel[...] = init(rngs.params(), module.kernel[...].shape, jnp.float32)
  return model


def token_losses(model: nnx.Module, batch) -> jax.Array:
  logits = model(batch["inputs"]).astype(jnp.float32)
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])


def _examples(ids: np.ndarray, pad: int) -> dict[str, np.ndarray]:
  return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "weights": (ids[:, 1:] != pad).astype(np.float32)}


def _masked(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  return {"inputs": batch["inputs"], "targets": batch["targets"],
          "weights": (batch["weights"] * batch["mask"][:, None]).astype(np.float32)}


def make_task(config: ArxivToModelConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The LM task on the pipeline's output (one stage; `inputs` unused)."""
  c = corpus_lib.corpus(config)
  tok = c.tokenizers[config.tokenizer]
  pad, vocab = tok_lib.pad_id(tok), vocab_of(config, tok.get_vocab_size())
  schedule = optax.warmup_cosine_decay_schedule(0.0, config.lr, max(config.warmup_steps, 1),
                                                max(config.train.steps, config.warmup_steps + 1), end_value=0.0)
  optimizer = optax.chain(optax.clip_by_global_norm(config.clip),
                          optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                                      weight_decay=config.weight_decay))
  train = data_lib.ArraySource(_examples(c.train_ids, pad))
  held_out = [_masked(b) for b in data_lib.eval_batches(data_lib.ArraySource(_examples(c.validation_ids, pad)),
                                                        config.batch_size, pad_to_multiple=mesh.size)]
  batches = data_lib.iterator(data_lib.batch_dataset(train, min(config.batch_size, len(train)),
                                                     seed=config.train.seed).map(_masked))

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    losses, w = token_losses(model, batch), batch["weights"]
    return jnp.sum(losses * w) / jnp.maximum(jnp.sum(w), 1.0), {"tokens": jnp.sum(w)}

  def eval_fn(model, batch):
    return {"loss": metrics.mean(token_losses(model, batch), batch["weights"])}

  return Task(init_model=lambda rngs: build_model(config.model, vocab, rngs), optimizer=optimizer,
              loss_fn=loss_fn, train_data=batches, eval_data={"validation": held_out}, eval_fn=eval_fn)
