"""Teacher, sparse students and their training tasks (SpargeAttention2, arXiv 2602.13515, Sec. 4.2).

* Teacher: a DiT with full attention trained with the flow-matching loss on the original
  distribution (the "pretrained model").
* Student: the same weights, every self-attention replaced by SpargeAttention2's sparse
  attention (hybrid Top-k + Top-p block mask, Eq. (9)). Training-free = no fine-tuning.
* Velocity distillation (VD, Sec. 4.2, Alg. 2): fine-tune the student on the *shifted* set with
  `||u_student(x_t) - stop_grad(u_teacher_full(x_t))||^2`; the data only build x_t.
* The alternative: fine-tune the student with the flow-matching loss on the shifted set.
All runs go through the shared training loop (`jaxpapers.core.train`).
"""

from __future__ import annotations

import functools

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import data, diffusion
from jaxpapers.core.train import Task
from jaxpapers.nn import dit, sparse_mask

from . import data as data_lib
from .config import SpargeConfig

TRAIN_SEED, FINETUNE_SEED, EVAL_SEED = 0, 1, 2


def student_attention(config: SpargeConfig, implementation: str | None = None):
  """SpargeAttention2's attention with the config's mask (layout [B, N, H, D]).

  The "xla" path gathers `sparse_mask.kept_blocks_bound` key blocks per query block, a bound
  on every row's count, so inside a jitted step it computes exactly what the dense reference
  computes at a fraction of the work.
  """
  implementation = implementation or config.attention_impl
  kept = None
  if implementation == "xla":
    kept = sparse_mask.kept_blocks_bound(-(-config.model.num_tokens // config.block_k),
                                         config.top_k, config.top_p, config.rule)
  return functools.partial(sparse_mask.sparge_attention, block_q=config.block_q,
                           block_k=config.block_k, top_k=config.top_k, top_p=config.top_p,
                           rule=config.rule, top_p_boundary=config.top_p_boundary,
                           implementation=implementation, max_kept_blocks=kept)


@functools.lru_cache(maxsize=8)
def videos(config: SpargeConfig, distribution: str, n: int, seed: int):
  return data_lib.make_videos(config.data, n, distribution, seed)


def _source(config: SpargeConfig, distribution: str, seed: int) -> data.ArraySource:
  x0, labels = videos(config, distribution, config.data.train_examples, seed)
  return data.ArraySource({"x0": x0, "label": labels})


def _iterator(config: SpargeConfig, source: data.ArraySource, mesh: jax.sharding.Mesh,
              seed: int, batch_size: int | None = None) -> grain.DatasetIterator:
  return data.batches(source, batch_size or config.batch_size, seed=seed,
                      pad_to_multiple=mesh.size,
                      process_index=jax.process_index(), process_count=jax.process_count())


def _noise_and_times(config: SpargeConfig, batch, rng):
  noise_rng, time_rng = jax.random.split(rng)
  x0 = batch["x0"]
  noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
  t = diffusion.sample_times(time_rng, x0.shape[0], config.time_sampling)
  return x0, noise, t


def flow_matching_loss_fn(config: SpargeConfig, attention=None):
  """Task loss: the flow-matching loss ||u(x_t) - (eps - x_0)||^2 with `attention`, padded rows
  masked out."""
  def loss_fn(model: dit.DiT, batch, rng):
    x0, noise, t = _noise_and_times(config, batch, rng)
    return diffusion.flow_matching_loss(model, x0, batch["label"], noise, t, attention,
                                        mask=batch["mask"]), {}
  return loss_fn


def velocity_distillation_loss_fn(config: SpargeConfig, teacher_def, teacher_state):
  """Task loss: L_VD of the sparse student against the frozen full-attention teacher."""
  attention = student_attention(config)

  def loss_fn(model: dit.DiT, batch, rng):
    teacher = nnx.merge(teacher_def, teacher_state)
    x0, noise, t = _noise_and_times(config, batch, rng)
    x_t = diffusion.interpolate(x0, noise, t)
    return diffusion.velocity_distillation_loss(model, teacher, x_t, t, batch["label"], attention,
                                                dit.dense_attention, mask=batch["mask"]), {}
  return loss_fn


def _optimizer(lr: float, warmup: int, steps: int, decay: bool) -> optax.GradientTransformation:
  if decay:
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(steps, warmup + 1),
                                                  end_value=0.1 * lr)
  else:
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, max(warmup, 1)),
                                     optax.constant_schedule(lr)], [max(warmup, 1)])
  return optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=0.0)


def make_task(config: SpargeConfig, mesh: jax.sharding.Mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """The teacher: full attention, flow-matching loss, original distribution."""
  return Task(
      init_model=functools.partial(dit.DiT, config.model),
      optimizer=_optimizer(config.lr, config.warmup_steps, config.teacher.steps, decay=True),
      loss_fn=flow_matching_loss_fn(config, dit.dense_attention),
      train_data=_iterator(config, _source(config, "original", TRAIN_SEED), mesh,
                           config.teacher.seed),
  )


def graphdef(config: SpargeConfig):
  """The DiT's graph definition (abstract build: no initialisation is computed)."""
  return nnx.graphdef(nnx.eval_shape(lambda: dit.DiT(config.model, rngs=nnx.Rngs(0))))


def _from_state(config: SpargeConfig, state, rngs: nnx.Rngs) -> dit.DiT:  # pylint: disable=unused-argument
  return nnx.merge(graphdef(config), jax.tree.map(jnp.asarray, state))


def make_finetune_task(config: SpargeConfig, mesh: jax.sharding.Mesh, teacher_state,
                       loss: str) -> Task:
  """A sparse student initialised at the teacher, fine-tuned on the shifted set.

  Args:
    config: the run.
    mesh: devices.
    teacher_state: the teacher's `nnx.state` (host arrays).
    loss: "vd" (velocity distillation: stage `student`, trained by `config.student`) or "fm"
      (flow matching with sparse attention: stage `fm_finetune`, by `config.fm_finetune`).
  """
  teacher_def = graphdef(config)
  if loss == "vd":
    loss_fn = velocity_distillation_loss_fn(config, teacher_def, teacher_state)
    train = config.student
  elif loss == "fm":
    loss_fn = flow_matching_loss_fn(config, student_attention(config))
    train = config.fm_finetune
  else:
    raise ValueError(f"unknown fine-tuning loss {loss!r}; choose vd or fm")
  wrt = nnx.Param
  if config.trainable == "attention":
    wrt = nnx.All(nnx.Param, nnx.Any(nnx.PathContains("qkv"), nnx.PathContains("proj")))
  return Task(
      init_model=functools.partial(_from_state, config, teacher_state),
      optimizer=_optimizer(config.finetune_lr, config.finetune_warmup, train.steps,
                           decay=config.finetune_schedule == "cosine"),
      loss_fn=loss_fn,
      train_data=_iterator(config, _source(config, "shifted", FINETUNE_SEED), mesh, train.seed,
                           config.finetune_batch_size),
      wrt=wrt,
  )


def make_student_task(config: SpargeConfig, mesh: jax.sharding.Mesh, inputs) -> Task:
  """Stage `student`: velocity distillation of the sparse student from `inputs["teacher"]`."""
  return make_finetune_task(config, mesh, inputs["teacher"], "vd")


def make_fm_finetune_task(config: SpargeConfig, mesh: jax.sharding.Mesh, inputs) -> Task:
  """Stage `fm_finetune`: flow-matching fine-tune of the sparse student from `inputs["teacher"]`."""
  return make_finetune_task(config, mesh, inputs["teacher"], "fm")


class HeldOut:
  """Held-out (x_0, eps, t, label) of a distribution (default: the original), and the teacher's
  answers.

  `evaluate(state, attention)` returns the velocity MSE to the teacher, the flow-matching loss
  and (for sparse attention) the block sparsity of the masks the student used.
  """

  def __init__(self, config: SpargeConfig, teacher_state, distribution: str = "original"):
    n = config.data.eval_examples
    x0, labels = videos(config, distribution, n, EVAL_SEED)
    rng = np.random.default_rng(EVAL_SEED)
    noise = rng.standard_normal(x0.shape).astype(np.float32)
    if config.time_sampling == "uniform":
      t = rng.uniform(0, 1, n)
    else:
      t = 1 / (1 + np.exp(-rng.standard_normal(n)))
    self.config = config
    self.x0, self.labels, self.noise = jnp.asarray(x0), jnp.asarray(labels), jnp.asarray(noise)
    self.t = jnp.asarray(t, jnp.float32)
    self.x_t = diffusion.interpolate(self.x0, self.noise, self.t)
    self._graphdef = graphdef(config)
    self._evaluate = jax.jit(self._metrics, static_argnums=(1, 2))
    self.teacher_velocity = self._velocity(teacher_state, dit.dense_attention)

  def _velocity(self, state, attention):
    return jax.jit(lambda s: nnx.merge(self._graphdef, s)(self.x_t, self.t, self.labels,
                                                          attention))(state)

  def _metrics(self, state, attention, sparsity: bool = True):
    sparsities = []

    def recording(q, k, v):
      if sparsity and attention is not dit.dense_attention:
        mask = sparse_mask.predict_block_mask(q, k, block_q=self.config.block_q,
                                              block_k=self.config.block_k,
                                              top_k=self.config.top_k, top_p=self.config.top_p,
                                              rule=self.config.rule,
                                              top_p_boundary=self.config.top_p_boundary)
        sparsities.append(sparse_mask.block_sparsity(mask, q.shape[1], k.shape[1],
                                                     self.config.block_q, self.config.block_k))
      return attention(q, k, v)

    u = nnx.merge(self._graphdef, state)(self.x_t, self.t, self.labels, recording)
    out = {"mse_to_teacher": diffusion.mean_squared_error(u, self.teacher_velocity),
           "fm_loss": diffusion.mean_squared_error(u, self.noise - self.x0)}
    if sparsities:
      out["sparsity"] = jnp.mean(jnp.stack(sparsities))
    return out

  def evaluate(self, state, attention, sparsity: bool = True) -> dict[str, float]:
    """The metrics of `state` under `attention`; `sparsity=False` skips the masks' sparsity
    (one mask prediction less per attention call in the compiled program)."""
    return {k: float(v) for k, v in self._evaluate(state, attention, sparsity).items()}
