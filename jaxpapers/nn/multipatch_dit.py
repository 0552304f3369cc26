"""A DiT that runs at several patch sizes: DDiT's multi-patch tokenization (arXiv 2602.16968, Sec. 3).

DDiT (Kim, Gadde, Ghadiyaram, "DDiT: Dynamic Patch Scheduling for Efficient Diffusion
Transformers", arXiv 2602.16968, Sec. 3.1 "multi-patch tokenization") keeps a pretrained DiT's
transformer blocks and adds, for each coarser patch size `p' = s p` (s in `scales`, e.g. 2 and 4):

* its own patch embedding `W_emb_{p'}` [p'^2 C, d] and de-embedding [d, p'^2 C] (the grid has
  (H/p')(W/p') tokens, s^2 times fewer than at the base size);
* the base positional embedding bilinearly interpolated from the (H/p x W/p) grid to the
  (H/p' x W/p') grid;
* a learned patch-size embedding `e_{p'}` [d] added to every token (zero-initialised here);
* LoRA branches (`flax.nnx.LoRA`, shared by the coarse sizes) on both MLP linears of every
  block, active only off the base size;
* a long residual from the latent before the patch embedding to the output after the
  de-embedding, `out = Deembed_{p'}(h_L) + R_phi(z_t)`, with `R_phi` a per-pixel MLP
  (LayerNorm -> Linear(C, 4C) -> GELU -> Linear(4C, C), last layer zero-initialised).

Initialisation: the new embedding is FlexiViT's PI-resize of the base one (Beyer et al., arXiv
2212.08013, Sec. 3.4): with `B` [p'^2, p^2] the bilinear up-sampling of a p x p patch to p' x p'
(per channel, `B (x) I_C`), `W_emb_{p'} = B (B^T B)^-1 W_emb_p`, so `<B x, W_emb_{p'}> = <x,
W_emb_p>`; the new de-embedding up-samples the base per-token output bilinearly,
`W_de_{p'} = W_de_p (B (x) I_C)^T` (bias likewise). The paper states the PI-resize of the
embedding; the de-embedding rule, the zero size embedding and LoRA only off the base size are our
choices, which make the base path exactly the teacher's at any time: `model(x, t, c)` at the base
size runs the wrapped `DiT` itself, bit for bit.

Only the new parts are trained (`ADAPTERS`, a filter for `nnx.Optimizer(..., wrt=ADAPTERS)`):
every parameter outside the wrapped DiT (`model.dit`). Images only ([B, H, W, C]).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.core.config import check
from jaxpapers.nn import dit as dit_lib

# Every parameter DDiT adds: those outside the wrapped teacher (`MultiPatchDiT.dit`).
ADAPTERS = nnx.All(nnx.Param, nnx.Not(nnx.PathContains("dit")))


@dataclasses.dataclass(frozen=True)
class MultiPatchConfig:
  """Shape of a multi-patch DiT.

  Attributes:
    dit: the base DiT (its `patch` is the base size p; images only).
    scales: coarse patch sizes as multiples of p (DDiT: 2 and 4).
    lora_rank: rank of the LoRA branches on fc1 and fc2 of every block (paper: 32).
    residual: include the long residual R_phi.
    residual_norm: LayerNorm at R_phi's input ("auto": only with more than one channel, since
      a LayerNorm over a single channel outputs a constant).
  """

  dit: dit_lib.DiTConfig = dit_lib.DiTConfig(input_shape=(16, 16), patch=(2, 2), num_classes=1)
  scales: tuple[int, ...] = (2,)
  lora_rank: int = 8
  residual: bool = True
  residual_norm: str = "auto"

  def __post_init__(self):
    check(len(self.dit.input_shape) == 2, "model.dit.input_shape", self.dit.input_shape,
          "(H, W): the multi-patch DiT takes images")
    check(len(self.scales) >= 1 and len(set(self.scales)) == len(self.scales)
          and all(s >= 2 for s in self.scales), "model.scales", self.scales,
          "distinct integers >= 2 (coarse patch = scale x base patch)")
    for s in self.scales:
      check(all(n % (p * s) == 0 for n, p in zip(self.dit.input_shape, self.dit.patch)),
            "model.scales", self.scales,
            f"scales whose patches ({s} x {self.dit.patch}) divide {self.dit.input_shape}")
    check(self.lora_rank >= 1, "model.lora_rank", self.lora_rank, ">= 1")
    check(self.residual_norm in ("auto", "on", "off"), "model.residual_norm", self.residual_norm,
          "one of auto, on, off")

  @property
  def base(self) -> int:
    """The base patch size p (square patches)."""
    return self.dit.patch[0]

  @property
  def sizes(self) -> tuple[int, ...]:
    """Every patch size, base first."""
    return (self.base,) + tuple(self.base * s for s in self.scales)

  def num_tokens(self, size: int) -> int:
    h, w = self.dit.input_shape
    return (h // size) * (w // size)


def _bilinear_1d(p: int, size: int) -> np.ndarray:
  """[size, p]: 1-D linear interpolation at half-pixel centres, edges clamped."""
  u = np.clip((np.arange(size) + 0.5) * p / size - 0.5, 0, p - 1)
  lo = np.floor(u).astype(int)
  hi = np.minimum(lo + 1, p - 1)
  m = np.zeros((size, p))
  np.add.at(m, (np.arange(size), lo), 1 - (u - lo))
  np.add.at(m, (np.arange(size), hi), u - lo)
  return m


def bilinear_matrix(p: int, size: int) -> np.ndarray:
  """B [size^2, p^2]: bilinear up-sampling of a row-major p x p patch to size x size.

  Half-pixel centres with clamped edges, as `jax.image.resize(..., "bilinear")` and FlexiViT's
  PI-resize use; numpy only, so it can be built inside a traced initialisation.
  """
  b = _bilinear_1d(p, size)
  return np.kron(b, b)


def pi_resize_matrix(p: int, size: int, channels: int) -> np.ndarray:
  """(B^T)^+ (x) I_C = (B (B^T B)^-1) (x) I_C, [size^2 C, p^2 C]: W_new = this @ W_base."""
  b = bilinear_matrix(p, size)
  return np.kron(b @ np.linalg.inv(b.T @ b), np.eye(channels))


def upsample_matrix(p: int, size: int, channels: int) -> np.ndarray:
  """B (x) I_C, [size^2 C, p^2 C], on patches flattened as `dit.patchify` does (row, col, C)."""
  return np.kron(bilinear_matrix(p, size), np.eye(channels))


def interpolate_positions(pos: jax.Array, grid: tuple[int, int], coarse: tuple[int, int]) -> jax.Array:
  """Bilinear interpolation of a [gh * gw, d] position table to the coarse grid, [ch * cw, d]."""
  table = pos.reshape(*grid, -1)
  return jax.image.resize(table, (*coarse, table.shape[-1]), "bilinear",
                          antialias=False).reshape(coarse[0] * coarse[1], -1)


class CoarsePath(nnx.Module):
  """The parts of one coarse patch size: embedding, de-embedding, size embedding."""

  def __init__(self, patch_dim: int, out_dim: int, width: int, *, rngs: nnx.Rngs):
    self.embed = nnx.Linear(patch_dim, width, rngs=rngs)
    self.out = nnx.Linear(width, out_dim, kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.size_id = nnx.Param(jnp.zeros((width,), jnp.float32))


class Residual(nnx.Module):
  """R_phi: a per-pixel MLP, LayerNorm -> Linear(C, 4C) -> GELU -> Linear(4C, C), last layer zero."""

  def __init__(self, channels: int, norm: bool, *, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(channels, rngs=rngs) if norm else None
    self.fc1 = nnx.Linear(channels, 4 * channels, rngs=rngs)
    self.fc2 = nnx.Linear(4 * channels, channels, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x if self.norm is None else self.norm(x)
    return self.fc2(jax.nn.gelu(self.fc1(h), approximate=True))


class MultiPatchDiT(nnx.Module):
  """A DiT (`self.dit`, the frozen teacher) plus DDiT's coarse patch sizes.

  Args:
    config: the shape.
    rngs: initialisation of the new parts (call `init_from_base` after loading the teacher).
  """

  def __init__(self, config: MultiPatchConfig, *, rngs: nnx.Rngs):
    self.config = config
    d = config.dit
    w, c = d.width, d.channels
    self.dit = dit_lib.DiT(d, rngs=rngs)
    self.paths = nnx.List([CoarsePath(size * size * c, size * size * c, w, rngs=rngs)
                           for size in config.sizes[1:]])
    self.lora1 = nnx.List([nnx.LoRA(w, config.lora_rank, d.mlp_ratio * w, rngs=rngs)
                           for _ in range(d.depth)])
    self.lora2 = nnx.List([nnx.LoRA(d.mlp_ratio * w, config.lora_rank, w, rngs=rngs)
                           for _ in range(d.depth)])
    norm = config.residual_norm == "on" or (config.residual_norm == "auto" and c > 1)
    self.residual = Residual(c, norm, rngs=rngs) if config.residual else None

  def init_from_base(self) -> None:
    """PI-resize of the base embedding and bilinear up-sampling of the base de-embedding."""
    cfg = self.config
    p, c = cfg.base, cfg.dit.channels
    base_embed, base_out = self.dit.embed, self.dit.out
    for size, path in zip(cfg.sizes[1:], self.paths):
      pinv = jnp.asarray(pi_resize_matrix(p, size, c), jnp.float32)
      up = jnp.asarray(upsample_matrix(p, size, c), jnp.float32)
      path.embed.kernel[...] = pinv @ base_embed.kernel[...]
      path.embed.bias[...] = base_embed.bias[...]
      path.out.kernel[...] = base_out.kernel[...] @ up.T
      path.out.bias[...] = up @ base_out.bias[...]

  def _path(self, size: int) -> CoarsePath:
    sizes = self.config.sizes
    if size not in sizes[1:]:
      raise ValueError(f"patch size {size} is not a coarse size of this model; choose from "
                       f"{sizes[1:]} (or {sizes[0]}, the base)")
    return self.paths[sizes.index(size) - 1]

  def tokens(self, x: jax.Array, t: jax.Array, labels: jax.Array, size: int
             ) -> tuple[jax.Array, jax.Array]:
    """(input tokens h_0 [B, N_size, d], condition c [B, d]) at patch size `size`."""
    d = self.dit
    c = d.condition(t, labels)
    if size == self.config.base:
      return d.embed(dit_lib.patchify(x, d.config.patch)) + d.pos[...], c
    path = self._path(size)
    grid = d.config.grid
    coarse = tuple(n // size for n in d.config.input_shape)
    pos = interpolate_positions(d.pos[...], grid, coarse)
    return path.embed(dit_lib.patchify(x, (size, size))) + pos + path.size_id[...], c

  def blocks(self, h: jax.Array, c: jax.Array, size: int, attention=None) -> jax.Array:
    """The transformer stack (LoRA on the MLPs off the base size)."""
    attention = self.dit.attention if attention is None else attention
    coarse = size != self.config.base
    for i, block in enumerate(self.dit.blocks):
      adapters = (self.lora1[i], self.lora2[i]) if coarse else None
      h = block(h, c, attention, adapters)
    return h

  def head(self, h: jax.Array, c: jax.Array, x: jax.Array, size: int) -> jax.Array:
    """Final adaLN, de-embedding at `size`, un-patchify, plus R_phi(x) off the base size."""
    d = self.dit
    shift, scale = jnp.split(d.final_ada(jax.nn.silu(c)), 2, -1)
    h = dit_lib._modulate(d.final_norm(h), shift, scale)  # pylint: disable=protected-access
    if size == self.config.base:
      return dit_lib.unpatchify(d.out(h), d.config.input_shape, d.config.patch, d.config.channels)
    out = dit_lib.unpatchify(self._path(size).out(h), d.config.input_shape, (size, size),
                             d.config.channels)
    return out if self.residual is None else out + self.residual(x)

  def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array, attention=None,
               size: int | None = None) -> jax.Array:
    """Velocity at patch size `size` (None: the base size, which is the teacher's own forward)."""
    if size is None or size == self.config.base:
      return self.dit(x, t, labels, attention)
    h, c = self.tokens(x, t, labels, size)
    return self.head(self.blocks(h, c, size, attention), c, x, size)
