"""The tiny Trinity language-model task: AFMoE, bias balancing, optimizer, data (arXiv 2602.17004).

Loss: mean next-token cross-entropy over real targets of RSDB-packed (or sequentially packed)
documents, attention document-causal through segment ids, plus the report's two router losses,
each summed over the MoE layers: the sequence-wise balance loss (DeepSeek-V3's form, arXiv
2412.19437 eqs. 17-20, one packed row = one sequence) times `balance_loss`, and the router
z-loss (ST-MoE, arXiv 2202.08906 eq. 5) times `z_loss`, lowered to `z_loss_late` from step
`round(z_loss_switch * train.steps)` on (the report's mid-run change). The step comes with the
batch (`StepStamped`). After every optimizer step the trainer's hook updates each MoE layer's
expert bias from that step's expert loads summed over the whole global batch (SMEBU or the
centered sign rule), outside autodiff.
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


BALANCE_RULES = {"none": 0, "sign": 1, "smebu": 2}  # `batch["balance_rule"]` codes


def run_constants(config: TrinityConfig) -> dict[str, float]:
  """The run's settings that the jitted step reads from the batch (`StepStamped`).

  They are runtime inputs, not constants of the compiled program, so the runs of a sweep that
  differ only in them share one compiled step (README, "Issue 16"): the bias rule, its step size
  and the balance-loss weight.
  """
  return {"balance_rule": BALANCE_RULES[config.balancing], "balance_lr": config.balance_lr,
          "balance_loss_weight": config.balance_loss}


class StepStamped:
  """A packing loader whose batches also carry their index and the run's constants.

  Each batch gains `step`, int32 `[rows]` (all equal): the loader's own batch count
  (`RSDB.step`, `SequentialPacker.step`) before the batch, which the training loop's one batch
  per optimizer step makes the optimizer step; the state is the loader's, so a resumed run
  stamps the same steps. It also gains `run_constants(config)`, one `[rows]` column each
  (`balance_rule` int32, the others float32).
  """

  def __init__(self, loader: RSDB | SequentialPacker, config: TrinityConfig):
    self.loader = loader
    self.constants = {k: np.asarray(v, np.int32 if k == "balance_rule" else np.float32)
                      for k, v in run_constants(config).items()}

  def __next__(self) -> dict[str, np.ndarray]:
    step = self.loader.step
    batch = next(self.loader)
    rows = batch["inputs"].shape[:1]
    return {**batch, "step": np.full(rows, step, np.int32),
            **{k: np.full(rows, v, v.dtype) for k, v in self.constants.items()}}

  def __iter__(self):
    return self

  def get_state(self) -> dict[str, Any]:
    return self.loader.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self.loader.set_state(state)


def make_loader(config: TrinityConfig, seed: int):
  """The packing loader of this process's rows (resumable: get_state / set_state)."""
  stream = document_stream(config, seed)
  common = dict(process_index=jax.process_index(), process_count=jax.process_count())
  if config.data.loader == "sequential":
    return SequentialPacker(stream, config.batch_size, config.seq_len, **common)
  return RSDB(stream, config.batch_size, config.seq_len, buffer_size=config.data.buffer_size,
              seed=seed, **common)


def make_optimizer(config: TrinityConfig) -> optax.GradientTransformation:
  """AdamW or Trinity's Muon/AdamW split, with warm-up and cosine decay to 0.1 x peak.

  The schedule is built with peak 1 and the peak learning rate `lr` multiplies the update last
  (`optax.inject_hyperparams(optax.scale)`: a value in the optimizer state, not a constant of
  the compiled step, so the learning-rate sweep shares one compiled program). Both optimizers
  are linear in their learning rate (weight decay is scaled by it too), so this is
  `optax.adamw(schedule(lr))` (`optim.muon(schedule(lr), adam_learning_rate=schedule(adam_lr))`)
  up to float rounding (tests/experiments/test_trinity_aux.py).
  """
  unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(config.warmup_steps, 1),
                                            max(config.train.steps, config.warmup_steps + 1),
                                            end_value=0.1)
  if config.optimizer == "adamw":
    base = optax.adamw(unit, b1=0.9, b2=0.95, weight_decay=config.weight_decay)
  else:
    ratio = (config.adam_lr or config.lr) / config.lr
    adam = unit if ratio == 1 else (lambda count: ratio * unit(count))
    base = optim.muon(unit, adam_learning_rate=adam, weight_decay=config.weight_decay,
                      adam_weight_decay=config.weight_decay)
  return optax.chain(base, optax.inject_hyperparams(optax.scale)(step_size=config.lr))


def z_loss_coefficient(config: TrinityConfig, step: jax.Array) -> jax.Array:
  """`z_loss` before step `round(z_loss_switch * train.steps)`, `z_loss_late` from it on."""
  switch = round(config.z_loss_switch * config.train.steps)
  return jnp.where(step < switch, config.z_loss, config.z_loss_late).astype(jnp.float32)


def loss_fn(model: AfmoeLM, batch, rng, *, config: TrinityConfig):  # pylint: disable=unused-argument
  """Cross-entropy plus the weighted router losses; `batch["step"]` picks the z-loss weight."""
  logits, stats = model.call_with_stats(batch["inputs"], batch["segment_ids"],
                                        batch["segment_ids"] > 0)
  targets = jnp.maximum(batch["targets"], 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  lm_loss = jnp.sum(losses * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)
  z_weight = z_loss_coefficient(config, jnp.max(batch["step"]))
  balance_weight = jnp.max(batch["balance_loss_weight"])  # config.balance_loss (run_constants)
  loss = lm_loss + balance_weight * jnp.sum(stats.balance_loss) + z_weight * jnp.sum(stats.z_loss)
  maxvio = optim.max_violation(stats.counts)  # per MoE layer, on this step's global batch
  return loss, {"counts": stats.counts, "maxvio": jnp.mean(maxvio), "maxvio_max": jnp.max(maxvio),
                "lm_loss": lm_loss, "balance_loss": jnp.mean(stats.balance_loss),
                "z_loss": jnp.mean(stats.z_loss), "z_loss_weight": z_weight,
                "balance_rule": jnp.max(batch["balance_rule"]),
                "balance_lr": jnp.max(batch["balance_lr"])}


def balance(model: AfmoeLM, aux, config: TrinityConfig):
  """Updates every MoE layer's expert bias from the step's global loads; returns metrics.

  The rule (`aux["balance_rule"]`, `BALANCE_RULES`) and its step size (`aux["balance_lr"]`)
  are runtime values (`run_constants`): both rules are computed and the run's one kept (for
  "none", neither: bias and momentum are left as they are), so a sweep over rules and step
  sizes shares one compiled step. SMEBU's beta and kappa are the config's.
  """
  rule, lr = aux["balance_rule"], aux["balance_lr"]
  smebu = optim.smebu(lr, config.balance_momentum, config.balance_kappa)
  sign = optim.sign_bias_balancing(lr)
  jitter, total = [], []
  for layer, counts in zip(model.moe_layers(), aux["counts"]):
    excess = optim.load_excess(counts)
    momentum = layer.bias_momentum[...]
    smebu_update, state = smebu.update(excess, optim.SmebuState(momentum))
    sign_update, _ = sign.update(excess, optax.EmptyState())
    update = jnp.select([rule == BALANCE_RULES["smebu"], rule == BALANCE_RULES["sign"]],
                        [smebu_update, sign_update], jnp.zeros_like(smebu_update))
    layer.expert_bias[...] = optax.apply_updates(layer.expert_bias[...], update)
    layer.bias_momentum[...] = jnp.where(rule == BALANCE_RULES["smebu"], state.momentum, momentum)
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
  return Task(
      init_model=functools.partial(AfmoeLM, config.model),
      optimizer=make_optimizer(config),
      loss_fn=functools.partial(loss_fn, config=config),
      train_data=StepStamped(make_loader(config, config.train.seed), config),
      eval_data={"eval": eval_batches(config)},
      eval_fn=evaluate,
      after_update=functools.partial(balance, config=config),
  )
