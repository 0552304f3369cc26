"""A small pre-norm causal language model that takes its sequence mixer and its MLP.

  x_0 = E[tokens]                                         (embedding, normal(embed_std) init)
  h = x_l + mixer_l(RMSNorm(x_l))
  x_{l+1} = h + gelu(RMSNorm(h) W_up [+ b_up]) W_down [+ b_down]           (l = 0 .. L-1)
  logits = RMSNorm(x_L) W_head [+ b_head]

The pre-norm residual block of GPT-2 (Radford et al., 2019) with RMSNorm and the GELU MLP of
Vaswani et al. (arXiv 1706.03762, section 3.3). The mixer is any causal
`[batch, seq, d] -> [batch, seq, d]` module: `jaxpapers.nn.attention.CausalSelfAttention` (the
fact-editing LM of CrispEdit, arXiv 2602.15823) or a 2Mamba-family `jaxpapers.nn.mixers.Mixer`
(the recall and character LMs of 2Mamba2Furious, arXiv 2602.17363).

Parameters are drawn in a fixed order from `rngs.params()`: the embedding, then for each layer
its mixer, `up` and `down` (the norms draw nothing), then the read-out head. The MLP projections
are attributes of the block (`layers[l].up`, `layers[l].down`), not of a nested module: the
training loop flattens parameters in sorted-key order, and optimizers with a global-norm step
(gradient clipping) sum over leaves in that order, so this layout keeps the summation order, and
thus the training numbers, of the experiments' original models. Any other MLP (SwiGLU, an MoE)
is passed as `mlp=factory`; the block then holds it as `layers[l].mlp`.

With `scan_layers=True` the blocks are one `jaxpapers.nn.scan.Scanned` stack run by a scan
(one compiled block whatever the depth): `layers.scanned` holds every block's parameters on a
leading `[num_layers]` axis (logical name `layers`). `remat` ("none" | "full" | "dots")
rematerializes each block in the backward pass, scanned or not.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from jaxpapers.nn import partitioning as pt
from jaxpapers.nn import scan
from jaxpapers.nn.embedding import embed_lookup
from jaxpapers.nn.norms import RMSNorm

MixerFactory = Callable[[nnx.Rngs], nnx.Module]
MLPFactory = Callable[[nnx.Rngs], nnx.Module]  # rngs -> `[B, T, d] -> [B, T, d]` module


class TinyLMBlock(nnx.Module):
  """Pre-norm residual block: `x + mixer(norm(x))`, then `+ down(gelu(up(norm(.))))`.

  Args:
    d_model: model width d.
    mixer: the (causal) sequence mixer, `[B, T, d] -> [B, T, d]`.
    mlp_hidden: hidden width of the GELU MLP (unused with `mlp`).
    mlp_bias: biases on the GELU MLP's projections.
    mlp: another MLP module, `[B, T, d] -> [B, T, d]`, in place of the GELU one.
    norm_eps: epsilon of both RMSNorms.
    rngs: initialization of the GELU MLP's projections (`up`, then `down`).
  """

  def __init__(self, d_model: int, mixer: nnx.Module, mlp_hidden: int, *, mlp_bias: bool = True,
               mlp: nnx.Module | None = None, norm_eps: float = 1e-5, rngs: nnx.Rngs):
    self.mixer_norm = RMSNorm(d_model, eps=norm_eps)
    self.mixer = mixer
    self.mlp_norm = RMSNorm(d_model, eps=norm_eps)
    if mlp is None:
      self.up = nnx.Linear(d_model, mlp_hidden, use_bias=mlp_bias, rngs=rngs,
                           kernel_metadata=pt.metadata((pt.EMBED, pt.MLP)),
                           bias_metadata=pt.metadata((pt.MLP,)))
      self.down = nnx.Linear(mlp_hidden, d_model, use_bias=mlp_bias, rngs=rngs,
                             kernel_metadata=pt.metadata((pt.MLP, pt.EMBED)))
    self.mlp = mlp

  def _mlp(self, x: jax.Array) -> jax.Array:
    if self.mlp is not None:
      return self.mlp(x)
    return self.down(jax.nn.gelu(self.up(x)))

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.mixer(self.mixer_norm(x))
    return x + self._mlp(self.mlp_norm(x))


class TinyLM(nnx.Module):
  """Token embedding, `num_layers` pre-norm blocks, final RMSNorm, untied linear head.

  Args:
    vocab_size: number of token ids (embedding rows and logits).
    d_model: model width d.
    num_layers: blocks L.
    mixer: `mixer(rngs)` builds one layer's sequence mixer (called once per layer, first).
    mlp_hidden: hidden width of every block's GELU MLP (unused with `mlp`).
    mlp_bias: biases on the GELU MLP's projections.
    mlp: `mlp(rngs)` builds one layer's MLP in place of the GELU MLP (called after its mixer).
    embed_std: standard deviation of the normal embedding init.
    head_bias: a bias on the read-out head.
    scan_layers: stack the blocks and run them in one scan (default: a list of blocks;
      the parameters and outputs of the unscanned model do not depend on `remat`).
    remat: rematerialization of every block: "none", "full" or "dots" (`jaxpapers.nn.scan`).
    norm_eps: epsilon of every RMSNorm (the blocks' and the final one).
    rngs: parameter initialization.

  Attributes:
    embed: `[vocab_size, d_model]` embedding table.
    layers: the `TinyLMBlock`s (`layers[l].mixer`, `layers[l].up`, `layers[l].down`, ...), or
      with `scan_layers` a `Scanned` stack of them (`layers.scanned.up.kernel` is
      `[num_layers, d_model, mlp_hidden]`).
    norm: final RMSNorm.
    head: read-out `nnx.Linear(d_model, vocab_size)`.
  """

  def __init__(self, vocab_size: int, d_model: int, num_layers: int, *, mixer: MixerFactory,
               mlp_hidden: int, mlp_bias: bool = True, mlp: MLPFactory | None = None,
               embed_std: float = 0.02, head_bias: bool = True, scan_layers: bool = False,
               remat: str = "none", norm_eps: float = 1e-5, rngs: nnx.Rngs):
    if min(vocab_size, d_model, num_layers, mlp_hidden) < 1:
      raise ValueError("vocab_size, d_model, num_layers and mlp_hidden must be >= 1; got "
                       f"{vocab_size}, {d_model}, {num_layers}, {mlp_hidden}")
    scan.check_remat(remat)
    self.scan_layers, self.remat = scan_layers, remat
    self.embed = pt.param(nnx.initializers.normal(embed_std)(rngs.params(), (vocab_size, d_model)),
                          (pt.VOCAB, pt.EMBED))
    make = lambda r: self._block(d_model, mixer, mlp_hidden, mlp_bias, mlp, norm_eps, r)
    if scan_layers:
      self.layers = scan.Scanned(make, num_layers, rngs=rngs, remat=remat)
    else:
      self.layers = nnx.List([make(rngs) for _ in range(num_layers)])
    self.norm = RMSNorm(d_model, eps=norm_eps)
    self.head = nnx.Linear(d_model, vocab_size, use_bias=head_bias, rngs=rngs,
                           kernel_metadata=pt.metadata((pt.EMBED, pt.VOCAB)),
                           bias_metadata=pt.metadata((pt.VOCAB,)))

  @staticmethod
  def _block(d_model, mixer, mlp_hidden, mlp_bias, mlp, norm_eps, rngs) -> TinyLMBlock:
    layer_mixer = mixer(rngs)  # drawn first: the parameter order of the original models
    return TinyLMBlock(d_model, layer_mixer, mlp_hidden, mlp_bias=mlp_bias,
                       mlp=None if mlp is None else mlp(rngs), norm_eps=norm_eps, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Logits `[batch, seq, vocab_size]` of int tokens `[batch, seq]`."""
    x = embed_lookup(self.embed[...], tokens)
    if self.scan_layers:
      x, _ = self.layers(x, body=_block_step)
    else:
      call = scan.checkpointed(_block_call, self.remat)
      for layer in self.layers:
        x = call(layer, x)
    return self.head(self.norm(x))


def _block_call(block: TinyLMBlock, x: jax.Array) -> jax.Array:
  return block(x)


def _block_step(block: TinyLMBlock, x: jax.Array) -> tuple[jax.Array, None]:
  return block(x), None
