"""Stages of the reference-guided self-improvement recipe (arXiv 2602.16802, Sec. 3).

* `sft` (Sec. 3.1): the policy distilled on the references (token cross-entropy, Adam).
* `dpo` (Sec. 3.2): one self-improvement round from the policy in `inputs["sft"]` (the SFT
  policy for round 1, the previous round's for the others): sample K candidates per prompt,
  judge all K (K - 1) ordered pairs (`labels`: reference-guided, reference-free or oracle),
  aggregate them into (chosen, rejected) pairs, and train DPO with that round-start policy as
  the reference model (refreshed every round, as the authors' `self_improve.sh` does).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers import rl
from jaxpapers.core.train import Task
from jaxpapers.data import ArraySource, full_batch
from jaxpapers.envs.alignment import AlignmentTask, JudgeParams, make_alignment_task

from .config import LABELS, RefDPOConfig


def task_of(config: RefDPOConfig) -> AlignmentTask:
  return make_alignment_task(config.prompts, config.length, config.vocab, config.corruption,
                             config.spurious_token, seed=config.seed)


def judge_params(config: RefDPOConfig) -> JudgeParams:
  j = config.judge
  return JudgeParams(j.scale, j.position_bias, j.ref_noise, j.free_noise, j.free_quality_weight,
                     j.free_spurious_weight)


def make_policy(config: RefDPOConfig, rngs: nnx.Rngs) -> nnx.Module:
  if config.policy == "lm":
    return rl.LMPolicy(config.prompts, config.length, config.vocab, d_model=config.lm_width,
                       num_layers=config.lm_layers, num_heads=config.lm_heads, rngs=rngs)
  return rl.FactorizedPolicy(config.prompts, config.length, config.vocab, config.hidden, rngs=rngs)


def policy_of(config: RefDPOConfig, state: Any) -> nnx.Module:
  """The policy with the parameters of a stage state."""
  abstract = nnx.eval_shape(lambda: make_policy(config, nnx.Rngs(0)))
  return nnx.merge(nnx.graphdef(abstract), jax.tree.map(jnp.asarray, state))


def _init_from(config: RefDPOConfig, state: Any, rngs: nnx.Rngs) -> nnx.Module:
  model = make_policy(config, rngs)
  nnx.update(model, jax.tree.map(jnp.asarray, state))
  return model


def make_sft_task(config: RefDPOConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `sft`: mean per-token negative log-likelihood of the references."""
  task = task_of(config)
  source = ArraySource({"prompt": np.arange(config.prompts, dtype=np.int32),
                        "response": np.asarray(task.reference)})

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    lp = rl.sequence_logprob(model(batch["prompt"], batch["response"]), batch["response"])
    w = batch["mask"].astype(jnp.float32)
    return -(lp * w).sum() / (w.sum() * config.length), {}

  return Task(init_model=functools.partial(make_policy, config), optimizer=optax.adam(config.sft_lr),
              loss_fn=loss_fn, train_data=full_batch(source, pad_to_multiple=mesh.size))


@functools.partial(nnx.jit, static_argnames=("k", "temperature", "params", "spurious", "vocab"))
def _round(policy, ideal, reference, sample_key, judge_key, kind, *, k, temperature, params, spurious,
           vocab):
  """One round's candidates, judged ordered pairs, aggregated labels and reference log-probs.

  `kind` (traced: one program for every judge) indexes LABELS.
  """
  task = AlignmentTask(ideal, reference, vocab, spurious)
  p, length = ideal.shape
  idx = jnp.arange(p)
  roll = rl.sample(policy, jnp.repeat(idx, k), sample_key, length, temperature)
  cands = roll.tokens.reshape(p, k, length)

  def judge(prompts, a, b, ref):  # pylint: disable=unused-argument
    every = [rl.slot_probability(*task.judge_logprobs(name, params, judge_key, prompts, a, b))
             for name in LABELS]
    return jnp.stack(every)[kind]

  probs, pairs = rl.judge_ordered_pairs(judge, idx, cands, reference)
  labels = rl.aggregate_pairwise(probs, pairs, k)
  chosen, rejected = cands[idx, labels.chosen], cands[idx, labels.rejected]
  logp = lambda y: rl.sequence_logprob(policy(idx, y), y)  # noqa: E731
  quality = task.quality(jnp.repeat(idx, k), roll.tokens).reshape(p, k)
  return {"prompt": idx.astype(jnp.int32), "chosen": chosen, "rejected": rejected,
          "ref_chosen": logp(chosen), "ref_rejected": logp(rejected),
          "valid": labels.valid.astype(jnp.float32), "quality_chosen": task.quality(idx, chosen),
          "quality_rejected": task.quality(idx, rejected), "probs": probs, "quality": quality}


def round_arrays(config: RefDPOConfig, state: Any, kind: str | None = None) -> dict[str, np.ndarray]:
  """The round's labels from judge `kind` (default: `config.labels`) on the policy of `state`.

  The candidates depend on the seed, the round and the policy only (the same for every judge).

  Returns:
    {"prompt", "chosen", "rejected" [P, L], "ref_chosen", "ref_rejected", "valid",
    "quality_chosen", "quality_rejected" [P], "probs" [P, K (K - 1)], "quality" [P, K]} (every
    prompt; an invalid one carries weight 0).
  """
  kind = kind or config.labels
  task = task_of(config)
  sample_key = jax.random.fold_in(jax.random.key(config.seed), 1000 + config.round)
  judge_key = jax.random.fold_in(jax.random.key(config.seed + 7919),
                                 1000 * config.round + LABELS.index(kind))
  out = _round(policy_of(config, state), task.ideal, task.reference, sample_key, judge_key,
               LABELS.index(kind), k=config.k, temperature=config.temperature, params=judge_params(config),
               spurious=config.spurious_token, vocab=config.vocab)
  return {name: np.asarray(v) for name, v in out.items()}


def judge_accuracy(config: RefDPOConfig, state: Any, kind: str) -> float:
  """Share of the ordered comparisons of candidates with different true quality that the judge
  gets right (P(A) > 0.5 exactly when A is truly better)."""
  r = round_arrays(config, state, kind)
  pairs = rl.ordered_pairs(config.k)
  qa, qb = r["quality"][:, pairs[:, 0]], r["quality"][:, pairs[:, 1]]
  differ = qa != qb
  return float(np.mean(((r["probs"] > 0.5) == (qa > qb))[differ]))





def dpo_batch_loss(config: RefDPOConfig, model, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean DPO loss over the valid pairs, with the mean implicit rewards and margin."""
  pc = rl.sequence_logprob(model(batch["prompt"], batch["chosen"]), batch["chosen"])
  pr = rl.sequence_logprob(model(batch["prompt"], batch["rejected"]), batch["rejected"])
  loss, rw, rr = rl.dpo_loss(pc, pr, batch["ref_chosen"], batch["ref_rejected"], config.beta,
                             reference_free=config.reference_free_loss)
  w = batch["valid"] * batch["mask"].astype(jnp.float32)
  n = jnp.maximum(w.sum(), 1.0)
  mean = lambda x: (x * w).sum() / n  # noqa: E731
  return mean(loss), {"chosen_reward": mean(rw), "rejected_reward": mean(rr), "margin": mean(rw - rr)}


def make_dpo_task(config: RefDPOConfig, mesh, inputs) -> Task:
  """Stage `dpo`: one round from `inputs["sft"]` (the round's starting and reference policy)."""
  state = inputs["sft"]
  pairs = round_arrays(config, state)
  source = ArraySource({k: pairs[k] for k in ("prompt", "chosen", "rejected", "ref_chosen",
                                             "ref_rejected", "valid")})

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    return dpo_batch_loss(config, model, batch)

  return Task(init_model=functools.partial(_init_from, config, state), optimizer=optax.adam(config.dpo_lr),
              loss_fn=loss_fn, train_data=full_batch(source, pad_to_multiple=mesh.size))


@functools.partial(nnx.jit, static_argnames=("samples", "vocab"))
def _quality(policy, ideal, key, *, samples, vocab):
  p, length = ideal.shape
  idx = jnp.arange(p)
  if not policy.autoregressive:  # independent positions: the mean of p(ideal token)
    probs = jax.nn.softmax(policy(idx, ideal), -1)
    return jnp.mean(jnp.take_along_axis(probs, ideal[..., None], -1))
  rep = jnp.repeat(idx, samples)
  roll = rl.sample(policy, rep, key, length, 1.0)
  return jnp.mean(AlignmentTask(ideal, ideal, vocab).quality(rep, roll.tokens))


def true_quality(config: RefDPOConfig, state: Any) -> float:
  """Expected true quality of the policy: exact for the MLP, a `quality_samples`-sample
  estimate (temperature 1) for the LM."""
  return float(_quality(policy_of(config, state), task_of(config).ideal,
                        jax.random.key(config.seed + 104729), samples=config.quality_samples,
                        vocab=config.vocab))
