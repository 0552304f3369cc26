"""DDiT's dynamic patch scheduling (arXiv 2602.16968, Sec. 3.2) and the sampler that applies it.

The scheduler (training-free, test time) looks at the third finite difference of the sampler's
latents along the steps (paper Sec. 3.2, "acceleration of the latent evolution"):

  Delta^3 z_{t-1} = z_{t-1} - 3 z_t + 3 z_{t+1} - z_{t+2}        (`third_diff`)

cuts it into p_i x p_i patches for each coarse candidate p_i, takes each patch's standard
deviation sigma_k, and the rho-th percentile of {sigma_k} over the patches; the next model call
runs at the largest candidate whose percentile is below tau, else at the base size
(`ddit_schedule`). It needs four latents, so the first three steps run at the base size. The
paper's defaults are tau = 0.001 and rho = 0.4 for FLUX / Wan latents and 50 steps; tau must be
calibrated for other models and step counts.

`ddit_sample` runs an Euler sampler (rectified flow, t from 1 to 0) with per-sample patch sizes:
each step groups the batch by chosen size and runs one jitted forward per size (no `lax.cond`
under `vmap`, which would run every branch), in power-of-two sub-batches so the number of
compiled shapes stays bounded. TeaCache (Liu et al., arXiv 2411.19108; combined with DDiT in
arXiv 2602.16968, Sec. 4) is an option: a step whose accumulated, polynomially rescaled relative
L1 change of the first block's modulated input stays below a threshold reuses the cached residual
(stack output minus stack input) of the last computed step; a change of patch size invalidates
the cache.

FLOPs are counted, not timed (`forward_flops`, `flop_ratio`): per transformer block with N
tokens, width d and MLP ratio r, `(8 + 4 r) N d^2 + 4 N^2 d + 12 d^2` (QKV and output
projections, MLP, scores and weighted values, adaLN modulation; a multiply-add is 2 FLOPs), plus
the patch embedding and de-embedding (and R_phi off the base size). The scheduler's own cost is
`scheduler_flops`, reported apart.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpapers.nn.multipatch_dit import MultiPatchConfig, MultiPatchDiT


def third_diff(z_tm1: jax.Array, z_t: jax.Array, z_tp1: jax.Array, z_tp2: jax.Array) -> jax.Array:
  """Delta^3 z_{t-1} = z_{t-1} - 3 z_t + 3 z_{t+1} - z_{t+2}, elementwise (newest latent first)."""
  return z_tm1 - 3 * z_t + 3 * z_tp1 - z_tp2


def patch_std(delta: jax.Array, size: int, per_channel: bool = False) -> jax.Array:
  """Standard deviation of each non-overlapping size x size patch of [B, H, W, C], [B, patches].

  Default: over all size^2 C values of a patch; `per_channel`: per channel, then the mean over
  channels (the LTX-2 port's variant).
  """
  b, h, w, c = delta.shape
  x = delta.reshape(b, h // size, size, w // size, size, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(b, (h // size) * (w // size), size * size, c)
  if per_channel:
    return jnp.mean(jnp.std(x, axis=2), axis=-1)
  return jnp.std(x.reshape(b, x.shape[1], -1), axis=-1)


def schedule_statistics(history: jax.Array, rho: float, sizes: Sequence[int],
                        per_channel: bool = False) -> jax.Array:
  """sigma^{p_i,(rho)} of each sample for each candidate size, [B, len(sizes)].

  Args:
    history: the last four latents [4, B, H, W, C], newest first (z_{t-1}, z_t, z_{t+1}, z_{t+2}).
    rho: the percentile as a fraction (0.4: the 40th percentile, linear interpolation).
    sizes: candidate patch sizes.
    per_channel: see `patch_std`.
  """
  delta = third_diff(history[0], history[1], history[2], history[3]).astype(jnp.float32)
  return jnp.stack([jnp.quantile(patch_std(delta, s, per_channel), rho, axis=-1, method="linear")
                    for s in sizes], axis=-1)


@functools.lru_cache(maxsize=32)
def _jitted_statistics(rho: float, sizes: tuple[int, ...], per_channel: bool):
  """`schedule_statistics` jitted once per setting (the sampler calls it every step)."""
  return jax.jit(functools.partial(schedule_statistics, rho=rho, sizes=sizes,
                                   per_channel=per_channel))


def ddit_schedule(history: jax.Array, tau: float, rho: float, sizes: Sequence[int], base: int,
                  per_channel: bool = False) -> jax.Array:
  """DDiT's patch size for each sample's next model call, int32 [B] (paper Sec. 3.2).

  `p_t = max{p_i in sizes : sigma^{p_i,(rho)} < tau}`, or `base` when no candidate qualifies.

  Args:
    history: the last four latents [4, B, H, W, C], newest first.
    tau: the threshold (larger: coarse more often).
    rho: the percentile as a fraction in [0, 1].
    sizes: coarse candidate patch sizes (e.g. (2p, 4p)).
    base: the base patch size p.
    per_channel: see `patch_std`.
  """
  stats = schedule_statistics(history, rho, sizes, per_channel)
  candidates = jnp.asarray(sizes, jnp.int32)
  chosen = jnp.where(stats < tau, candidates[None], jnp.int32(base))
  return jnp.max(chosen, axis=-1)


# ---------------------------------------------------------------- FLOPs (counted)


def block_flops(tokens: int, width: int, mlp_ratio: int = 4) -> float:
  """One transformer block: (8 + 4 r) N d^2 + 4 N^2 d + 12 d^2 FLOPs (multiply-add = 2)."""
  n, d = float(tokens), float(width)
  return (8 + 4 * mlp_ratio) * n * d * d + 4 * n * n * d + 12 * d * d


def forward_flops(config: MultiPatchConfig, size: int) -> float:
  """F(size): one model call at patch `size`, blocks + embed + de-embed (+ R_phi off the base)."""
  d = config.dit
  n = config.num_tokens(size)
  patch_dim = size * size * d.channels
  total = d.depth * block_flops(n, d.width, d.mlp_ratio) + 4.0 * n * patch_dim * d.width
  if size != config.base and config.residual:
    total += 16.0 * float(np.prod(d.input_shape)) * d.channels ** 2
  return total


def skipped_flops(config: MultiPatchConfig, size: int) -> float:
  """A TeaCache step that reuses the cached residual: embed, de-embed and the first block's
  modulation (the probe), no transformer blocks."""
  d = config.dit
  return (forward_flops(config, size) - d.depth * block_flops(config.num_tokens(size), d.width,
                                                              d.mlp_ratio)
          + 12.0 * d.width ** 2)


def scheduler_flops(config: MultiPatchConfig, candidates: int) -> float:
  """The scheduler per step and sample: Delta^3 (6 per value), a std per patch (about 4 per
  value) and a percentile (a sort, about n log2 n) per candidate. Reported apart from F."""
  values = float(np.prod(config.dit.input_shape)) * config.dit.channels
  total = 6 * values
  for size in config.sizes[1:1 + candidates]:
    n = config.num_tokens(size)
    total += 4 * values + n * max(np.log2(n), 1.0)
  return total


def flop_ratio(sizes: np.ndarray, config: MultiPatchConfig, computed: np.ndarray | None = None
               ) -> float:
  """Sum_t F(p_t) / (T F(p)), averaged over samples.

  Args:
    sizes: patch size of every step and sample, [T, B].
    config: the model.
    computed: [T, B], False where TeaCache reused its cache (None: every step computed).
  """
  sizes = np.asarray(sizes)
  full = {int(s): forward_flops(config, int(s)) for s in np.unique(sizes)}
  cost = np.vectorize(lambda s: full[int(s)])(sizes).astype(np.float64)
  if computed is not None:
    skip = np.vectorize(lambda s: skipped_flops(config, int(s)))(sizes)
    cost = np.where(np.asarray(computed), cost, skip)
  return float(np.mean(np.sum(cost, axis=0)) / (sizes.shape[0] * forward_flops(config, config.base)))


# ---------------------------------------------------------------- the sampler


@dataclasses.dataclass(frozen=True)
class TeaCache:
  """TeaCache's skipping rule.

  Attributes:
    threshold: the accumulated rescaled change below which a step reuses the cache (ell; the
      paper uses 0.6 for TeaCache alone and 0.4 combined with DDiT on FLUX).
    coefficients: the rescaling polynomial (numpy order, highest power first), fitted per
      model (`fit_teacache_coefficients`); (1, 0) is the identity.
  """

  threshold: float
  coefficients: tuple[float, ...] = (1.0, 0.0)


def fit_teacache_coefficients(input_change: np.ndarray, output_change: np.ndarray,
                              degree: int = 4) -> tuple[float, ...]:
  """TeaCache's calibration: a least-squares polynomial from the relative L1 change of the
  first block's modulated input to that of the model output between consecutive steps."""
  return tuple(float(c) for c in np.polyfit(np.asarray(input_change, np.float64),
                                            np.asarray(output_change, np.float64), degree))


class PatchForwards:
  """Jitted forwards of a `MultiPatchDiT`, one per patch size (and per TeaCache role).

  Each is a `jax.jit` of the model's call at a fixed size; jit caches one program per batch
  shape, and `ddit_sample` only uses power-of-two batch sizes.
  """

  def __init__(self, model: MultiPatchDiT):
    self.config = model.config
    graphdef, self.state = nnx.split(model)

    def velocity(state, x, t, labels, size):
      return nnx.merge(graphdef, state)(x, t, labels, size=size)

    def probe(state, x, t, labels, size):
      m = nnx.merge(graphdef, state)
      h, c = m.tokens(x, t, labels, size)
      return m.dit.blocks[0].modulated_input(h, c)

    def full(state, x, t, labels, size):
      m = nnx.merge(graphdef, state)
      h, c = m.tokens(x, t, labels, size)
      out = m.blocks(h, c, size)
      return m.head(out, c, x, size), out - h

    def skip(state, x, t, labels, residual, size):
      m = nnx.merge(graphdef, state)
      h, c = m.tokens(x, t, labels, size)
      return m.head(h + residual, c, x, size)

    self._velocity = jax.jit(velocity, static_argnums=4)
    self._probe = jax.jit(probe, static_argnums=4)
    self._full = jax.jit(full, static_argnums=4)
    self._skip = jax.jit(skip, static_argnums=5)

  def velocity(self, x, t, labels, size):
    return self._velocity(self.state, x, t, labels, size)

  def probe(self, x, t, labels, size):
    return self._probe(self.state, x, t, labels, size)

  def full(self, x, t, labels, size):
    return self._full(self.state, x, t, labels, size)

  def skip(self, x, t, labels, residual, size):
    return self._skip(self.state, x, t, labels, residual, size)


def _chunks(n: int, minimum: int) -> list[int]:
  """Power-of-two chunk sizes covering n rows (padded up to a multiple of `minimum`)."""
  units = -(-n // minimum)
  return [minimum << b for b in range(units.bit_length()) if units >> b & 1][::-1]


def _grouped(fn, index: np.ndarray, arrays: Sequence[np.ndarray], minimum: int):
  """fn on the rows `index` of `arrays`, in power-of-two chunks; outputs stacked in index order."""
  outs, start = [], 0
  for chunk in _chunks(len(index), minimum):
    rows = index[start:start + chunk]
    real = len(rows)
    if real < chunk:  # pad with copies of the last row (outputs dropped)
      rows = np.concatenate([rows, np.full(chunk - real, rows[-1])])
    out = fn(*(jnp.asarray(a[rows]) for a in arrays))
    out = out if isinstance(out, tuple) else (out,)
    outs.append([np.asarray(o)[:real] for o in out])
    start += real
  return [np.concatenate(parts) for parts in zip(*outs)]


@dataclasses.dataclass
class SampleResult:
  """What `ddit_sample` returns.

  Attributes:
    samples: the final latents [B, H, W, C].
    sizes: patch size used at every step, [T, B].
    computed: [T, B], False where TeaCache reused its cache.
    statistics: sigma^{p_i,(rho)} at every step, [T, B, candidates] (NaN on warm-up steps).
    seconds: wall-clock time of the sampling loop (compilation included unless warmed up).
    trajectory: every latent [T + 1, B, H, W, C] (noise first), with `keep_trajectory`.
  """

  samples: np.ndarray
  sizes: np.ndarray
  computed: np.ndarray
  statistics: np.ndarray
  seconds: float
  trajectory: np.ndarray | None = None


def ddit_sample(forwards: PatchForwards, noise: np.ndarray, labels: np.ndarray, steps: int, *,
                tau: float = 0.001, rho: float = 0.4, candidates: Sequence[int] | None = None,
                warmup: int = 3, per_channel: bool = False, schedule: np.ndarray | None = None,
                teacache: TeaCache | None = None, min_chunk: int = 8,
                keep_trajectory: bool = False) -> SampleResult:
  """Euler sampling from t = 1 to 0 with DDiT's per-sample patch sizes.

  Args:
    forwards: the model's jitted forwards.
    noise: the initial latents [B, H, W, C].
    labels: int conditions [B].
    steps: solver steps T.
    tau: the scheduler's threshold.
    rho: its percentile (fraction).
    candidates: coarse candidate sizes (default: every coarse size of the model).
    warmup: first steps at the base size (3: Delta^3 needs four latents).
    per_channel: see `patch_std`.
    schedule: [T, B] patch sizes to use instead of the scheduler (fixed baselines); the
      statistics are still recorded.
    teacache: TeaCache's rule (None: every step computed).
    min_chunk: sub-batches are power-of-two multiples of this (bounds the compiled shapes).
    keep_trajectory: also return every latent.
  """
  cfg = forwards.config
  base = cfg.base
  candidates = tuple(cfg.sizes[1:] if candidates is None else candidates)
  warmup = max(warmup, 3)
  x = np.asarray(noise, np.float32)
  labels = np.asarray(labels, np.int32)
  b = x.shape[0]
  times = np.linspace(1.0, 0.0, steps + 1).astype(np.float32)
  stats_fn = _jitted_statistics(float(rho), candidates, bool(per_channel))
  sizes = np.full((steps, b), base, np.int32)
  computed = np.ones((steps, b), bool)
  stats = np.full((steps, b, len(candidates)), np.nan, np.float32)
  history = [x]
  trajectory = [x] if keep_trajectory else None
  acc = np.zeros(b)
  last_size = np.zeros(b, np.int32)
  prev_probe: dict[int, np.ndarray] = {}
  cache: dict[int, np.ndarray] = {}
  start = time.perf_counter()
  for i in range(steps):
    if i >= warmup:
      stats[i] = np.asarray(stats_fn(jnp.asarray(np.stack(history[::-1][:4]))))
      chosen = np.where(stats[i] < tau, np.asarray(candidates)[None], base).max(-1)
      sizes[i] = chosen
    if schedule is not None:
      sizes[i] = np.asarray(schedule)[i]
    t = np.full(b, times[i], np.float32)
    u = np.empty_like(x)
    for size in np.unique(sizes[i]):
      size = int(size)
      idx = np.nonzero(sizes[i] == size)[0]
      if teacache is None:
        u[idx] = _grouped(lambda xs, ts, ls: forwards.velocity(xs, ts, ls, size), idx,
                          (x, t, labels), min_chunk)[0]
        continue
      (probe,) = _grouped(lambda xs, ts, ls: forwards.probe(xs, ts, ls, size), idx,
                          (x, t, labels), min_chunk)
      calc = np.ones(len(idx), bool)
      if 0 < i < steps - 1:
        same = last_size[idx] == size
        if size in prev_probe:
          prev = prev_probe[size][idx]
          rel = (np.abs(probe - prev).mean(axis=(1, 2))
                 / np.maximum(np.abs(prev).mean(axis=(1, 2)), 1e-12))
          acc[idx] = np.where(same, acc[idx] + np.polyval(teacache.coefficients, rel), 0.0)
          calc = ~same | (acc[idx] >= teacache.threshold)
      acc[idx[calc]] = 0.0
      if size not in prev_probe:
        prev_probe[size] = np.zeros((b, *probe.shape[1:]), np.float32)
        cache[size] = np.zeros((b, *probe.shape[1:]), np.float32)
      prev_probe[size][idx] = probe
      full_idx, skip_idx = idx[calc], idx[~calc]
      if len(full_idx):
        u[full_idx], cache[size][full_idx] = _grouped(
            lambda xs, ts, ls: forwards.full(xs, ts, ls, size), full_idx, (x, t, labels),
            min_chunk)
      if len(skip_idx):
        u[skip_idx] = _grouped(lambda xs, ts, ls, rs: forwards.skip(xs, ts, ls, rs, size),
                               skip_idx, (x, t, labels, cache[size]), min_chunk)[0]
      computed[i, skip_idx] = False
      last_size[idx] = size
    x = x + (times[i + 1] - times[i]) * u
    history = history[-3:] + [x]
    if trajectory is not None:
      trajectory.append(x)
  seconds = time.perf_counter() - start
  return SampleResult(x, sizes, computed, stats, seconds,
                      None if trajectory is None else np.stack(trajectory))
