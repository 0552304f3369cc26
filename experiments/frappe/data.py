"""push2d demonstrations and the frozen teachers' targets (FRAPPE, arXiv 2602.17259, Sec. 4).

Each frame of an expert episode gives one example: its image and proprio (agent xy), the next
`chunk` expert actions (zeros past the episode end), the future frame at `t + h` (clipped at
the episode end) and the future box position. Teachers on the future frame, all frozen and
precomputed (our toy stand-ins for the paper's CLIP / DINOv2 / ViT trio):

* T1 "CLIP-like": a random-init frozen CNN (conv 3->16 stride 2, conv 16->32 stride 2, mean pool);
* T2 "DINO-like", object-centric: Fourier features of the future box and agent positions;
* T3 "ViT-like": PCA of the future frame's pixels, fitted on training frames;
* S "Theia-like" (stage `teacher`): the same CNN, trained to regress standardised [T1 | T2 | T3].

Every teacher output is standardised with the task set's statistics.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from sklearn.decomposition import PCA

from jaxpapers.envs import push2d

from .config import FrappeConfig


def normalize(images: jax.Array) -> jax.Array:
  """Pixels in about [0, 1] -> about [-2, 2] (network input)."""
  return (images - 0.5) * 4.0


@functools.partial(jax.jit, static_argnames=("n", "chunk", "horizon", "shifted"))
def _episodes(key, n: int, chunk: int, horizon: int, shifted: bool, texture_offset: int = 0):
  k_ep, k_img = jax.random.split(key)
  states, actions, _ = jax.vmap(push2d.expert_episode)(jax.random.split(k_ep, n))
  textures = texture_offset + jnp.arange(n) % 20
  keys = jax.random.split(k_img, (n, push2d.EPISODE_STEPS))

  def render_episode(s, k, tex):
    if shifted:
      return jax.vmap(lambda si, ki: push2d.render_shifted(si, ki, tex))(s, k)
    return jax.vmap(push2d.render)(s, k)
  images = jax.vmap(render_episode)(states, keys, textures)  # [n, 40, 16, 16, 3]
  t = jnp.arange(push2d.EPISODE_STEPS)
  idx = jnp.minimum(t[:, None] + jnp.arange(chunk)[None], push2d.EPISODE_STEPS - 1)
  valid = (t[:, None] + jnp.arange(chunk)[None]) < push2d.EPISODE_STEPS
  chunks = jnp.where(valid[None, ..., None], actions[:, idx], 0.0)  # [n, 40, chunk, 2]
  future = jnp.minimum(t + horizon, push2d.EPISODE_STEPS - 1)
  return {"images": images, "proprio": states.agent, "actions": chunks,
          "future_images": images[:, future], "future_box": states.box[:, future],
          "future_agent": states.agent[:, future], "box": states.box}


# The same generator compiled with XLA's cheap backend settings (`data.quick_compile`, smoke):
# about half the compile time (the expert scan and the rendering dominate), while its values
# may differ from `_episodes`' in the last bits. The small and paper presets use `_episodes`.
_episodes_quick = jax.jit(
    _episodes.__wrapped__, static_argnames=("n", "chunk", "horizon", "shifted"),
    compiler_options={"xla_backend_optimization_level": 0,
                      "xla_llvm_disable_expensive_passes": True})


def demos(config: FrappeConfig, n: int, seed: int, shifted: bool = False,
          texture_offset: int = 0) -> dict[str, np.ndarray]:
  """`n` expert episodes flattened to frames (arrays [n * 40, ...]) plus `has_action`."""
  key = jax.random.fold_in(jax.random.key(config.data.seed), seed)
  episodes = _episodes_quick if config.data.quick_compile else _episodes
  out = episodes(key, n, config.model.chunk, config.data.horizon, shifted, texture_offset)
  out = {k: np.asarray(v).reshape(-1, *v.shape[2:]) for k, v in out.items()}
  out["has_action"] = np.full(len(out["images"]), 0.0 if shifted else 1.0, np.float32)
  if shifted:  # the action-free set: actions discarded
    out["actions"] = np.zeros_like(out["actions"])
  return out


class ConvEncoder(nnx.Module):
  """conv 3->16 stride 2, conv 16->32 stride 2, global mean pool, then a linear map to `dout`
  (identity-sized 32 for T1, whose output is the pooled features themselves)."""

  def __init__(self, dout: int | None, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(3, 16, (3, 3), strides=2, rngs=rngs)
    self.conv2 = nnx.Conv(16, 32, (3, 3), strides=2, rngs=rngs)
    self.out = None if dout is None else nnx.Linear(32, dout, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    h = jax.nn.relu(self.conv1(normalize(images)))
    h = jnp.mean(jax.nn.relu(self.conv2(h)), axis=(1, 2))
    return h if self.out is None else self.out(h)


def fourier(positions: jax.Array, dim: int) -> jax.Array:
  """`dim` Fourier features of 4 coordinates: sin and cos at 2^j pi, j < dim / 8."""
  freqs = (2.0 ** jnp.arange(dim // 8)) * jnp.pi
  angles = positions[..., :, None] * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], -1).reshape(*positions.shape[:-1], dim)


class Teachers:
  """The frozen T1, T2, T3 fitted on the task set; `__call__` gives standardised targets."""

  def __init__(self, config: FrappeConfig, fit_frames: dict[str, np.ndarray]):
    self.dim = config.mipa.target_dim
    self.t1 = ConvEncoder(None, rngs=nnx.Rngs(12_345))
    self.pca = PCA(self.dim, random_state=0).fit(fit_frames["images"].reshape(len(fit_frames["images"]), -1))
    raw = self._raw(fit_frames)
    self.stats = [(r.mean(0), r.std(0) + 1e-6) for r in raw]

  def _raw(self, frames):
    fut = frames["future_images"]
    t1 = np.concatenate([np.asarray(self.t1(jnp.asarray(fut[i:i + 4096])))
                         for i in range(0, len(fut), 4096)])
    pos = np.concatenate([frames["future_box"], frames["future_agent"]], -1)
    t2 = np.asarray(fourier(jnp.asarray(pos), self.dim))
    t3 = self.pca.transform(fut.reshape(len(fut), -1))
    if t1.shape[1] != self.dim:  # T1's 32 pooled features, tiled or cut to the target width
      t1 = np.resize(t1, (len(t1), self.dim)) if t1.shape[1] < self.dim else t1[:, :self.dim]
    return [t1, t2, t3]

  def __call__(self, frames) -> np.ndarray:
    """Standardised [T1, T2, T3] targets [3, N, dim] of the frames' future images."""
    return np.stack([(r - m) / s for r, (m, s) in zip(self._raw(frames), self.stats)]).astype(np.float32)
