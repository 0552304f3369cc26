"""Fact editing in a tiny transformer LM (CrispEdit, arXiv 2602.15823, an LLM-editing paper).

Data. A fact table `(subject, relation) -> object`: subjects and objects are single extra tokens
after the 256 byte tokens; each relation is written with 4 byte-level templates
(e.g. `"Where does <s> live? In <o>"`). A 2-layer pre-norm transformer is trained with the shared
loop on rows that are fact sentences (any template) or windows of Python standard-library source.

Study. `edits` facts get a new object of the same relation. Each editor changes only the MLP down
projection of one block, with the edit loss on the object token of templates 0-2:
fine-tuning (FT), CrispEdit (K-FAC factors of that layer on fresh batches of the pre-training
mixture, sampled labels, energy τ) and the A-only null space. Measured: edit success (templates
0-2), generalization (the held-out template 3), locality (accuracy of `locality_facts` unedited
facts over all templates), and capability (loss on held-out standard-library files).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.data import ArraySource, TextSource, eval_batches, stdlib_paths
from jaxpapers.editing import crisp_edit
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.optim import collect_kfac_factors, kfac_eigenbasis, kfac_project

from .config import CrispEditConfig, LMConfig

TEMPLATES = (
    ("{s} lives in {o}", "The home of {s} is {o}", "{s} resides in {o}", "Where does {s} live? In {o}"),
    ("{s} works as a {o}", "The job of {s} is {o}", "{s} is employed as a {o}", "By trade, {s} is a {o}"),
    ("{s} likes {o}", "The favourite of {s} is {o}", "{s} enjoys {o}", "Ask {s} what they love: {o}"),
)
HELD_OUT_TEMPLATE = 3
EDITORS = {"ft": "finetune", "crispedit": "crispedit", "a_only": "null_space"}


# ---- model ----


def fact_lm(config: LMConfig, vocab_size: int, *, rngs: nnx.Rngs) -> TinyLM:
  """The shared tiny LM with causal RoPE attention and a bias-free GELU MLP, N(0, 1) embedding,
  untied bias-free head (`layers[l].mixer.qkv`, `.mixer.out`, `.up`, `.down`)."""
  d = config.d_model
  return TinyLM(vocab_size, d, config.num_layers,
                mixer=lambda r: CausalSelfAttention(d, config.num_heads, rngs=r),
                mlp_hidden=config.mlp_width, mlp_bias=False, embed_std=1.0, head_bias=False,
                rngs=rngs)


def logits_fn(model: TinyLM, batch: dict[str, Any]) -> jax.Array:
  return model(batch["inputs"])


def edited_layer(config: LMConfig) -> tuple:
  return ("layers", config.edit_layer, "down")


# ---- data ----


@dataclasses.dataclass(frozen=True)
class Facts:
  """The fact table and its token layout."""

  objects: np.ndarray  # [subjects, relations] global object token ids
  subject_base: int
  object_base: int
  vocab_size: int
  objects_per_relation: int

  def candidates(self, relation: int) -> np.ndarray:
    return self.object_base + relation * self.objects_per_relation + np.arange(self.objects_per_relation)


def make_facts(config: LMConfig, seed: int = 0) -> Facts:
  rng = np.random.default_rng([seed, 7])
  subject_base = 256
  object_base = subject_base + config.subjects
  local = rng.integers(0, config.objects_per_relation, (config.subjects, config.relations))
  objects = object_base + np.arange(config.relations) * config.objects_per_relation + local
  vocab = object_base + config.relations * config.objects_per_relation
  return Facts(objects.astype(np.int32), subject_base, object_base, vocab, config.objects_per_relation)


def sentence(facts: Facts, subject: int, relation: int, template: int, obj: int) -> np.ndarray:
  """Token ids of one fact sentence (object last)."""
  text = TEMPLATES[relation][template]
  before, rest = text.split("{s}")
  middle, _ = rest.split("{o}")
  enc = lambda s: list(s.encode())
  return np.asarray(enc(before) + [facts.subject_base + subject] + enc(middle) + [obj], np.int32)


def fact_rows(facts: Facts, items, seq_len: int, loss_on: str) -> dict[str, np.ndarray]:
  """Rows `inputs/targets/mask` [n, seq_len] for (subject, relation, template, object) items.

  loss_on: "all" (every real next token, pre-training) or "object" (the object token only).
  """
  n = len(items)
  inputs = np.full((n, seq_len), ord(" "), np.int32)
  targets = np.zeros((n, seq_len), np.int32)
  mask = np.zeros((n, seq_len), np.float32)
  for i, (s, r, t, o) in enumerate(items):
    tokens = sentence(facts, s, r, t, o)
    length = len(tokens) - 1
    inputs[i, :length], targets[i, :length] = tokens[:-1], tokens[1:]
    if loss_on == "all":
      mask[i, :length] = 1.0
    else:
      mask[i, length - 1] = 1.0
  return {"inputs": inputs, "targets": targets, "mask": mask}


def text_sources(config: LMConfig) -> tuple[TextSource, TextSource]:
  """Train and held-out byte windows of standard-library sources (disjoint files)."""
  paths = stdlib_paths()
  held_out = paths[::10]
  train = [p for p in paths if p not in set(held_out)]
  return (TextSource(train, seq_len=config.seq_len, max_bytes=4_000_000),
          TextSource(held_out, seq_len=config.seq_len, max_bytes=400_000))


class MixtureBatches:
  """Resumable batches of fact sentences (any fact, any template) and text windows.

  Batch i is drawn from `default_rng([seed, i])`, so the position is the whole state.
  """

  def __init__(self, config: LMConfig, facts: Facts, text: TextSource, seed: int):
    self.config, self.facts, self.text, self.seed, self.index = config, facts, text, seed, 0

  def batch(self, index: int) -> dict[str, np.ndarray]:
    cfg = self.config
    rng = np.random.default_rng([self.seed, index])
    n_facts = int(round(cfg.batch_size * cfg.fact_fraction))
    subjects = rng.integers(0, cfg.subjects, n_facts)
    relations = rng.integers(0, cfg.relations, n_facts)
    templates = rng.integers(0, len(TEMPLATES[0]), n_facts)
    items = [(s, r, t, self.facts.objects[s, r]) for s, r, t in zip(subjects, relations, templates)]
    facts = fact_rows(self.facts, items, cfg.seq_len, "all")
    windows = [self.text[int(i)] for i in rng.integers(0, len(self.text), cfg.batch_size - n_facts)]
    text = {"inputs": np.stack([w["inputs"] for w in windows]),
            "targets": np.stack([w["targets"] for w in windows])}
    text["mask"] = np.ones(text["inputs"].shape, np.float32)
    return {k: np.concatenate([facts[k], text[k]]) for k in facts}

  def __next__(self) -> dict[str, np.ndarray]:
    out = self.batch(self.index)
    self.index += 1
    return out

  def get_state(self) -> dict[str, Any]:
    return {"index": self.index}

  def set_state(self, state: dict[str, Any]) -> None:
    self.index = int(state["index"])


def _masked_ce(logits, batch):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["targets"])
  return jnp.sum(ce * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)


def _loss_fn(model, batch, rng):  # pylint: disable=unused-argument
  return _masked_ce(model(batch["inputs"]), batch), {}


def held_out_text(config: LMConfig) -> dict[str, np.ndarray]:
  _, held_out = text_sources(config)
  n = min(config.eval_text_batches * config.batch_size, len(held_out))
  rows = [held_out[i] for i in np.linspace(0, len(held_out) - 1, n).astype(int)]
  out = {k: np.stack([r[k] for r in rows]) for k in ("inputs", "targets")}
  out["mask"] = np.ones(out["inputs"].shape, np.float32)
  return out


def all_fact_rows(config: LMConfig, facts: Facts, pairs, templates) -> dict[str, np.ndarray]:
  items = [(s, r, t, facts.objects[s, r]) for s, r in pairs for t in templates]
  return fact_rows(facts, items, config.seq_len, "object")


def evaluate(model, batch) -> dict[str, metrics.Mean]:
  """Token loss and accuracy where the batch's per-token mask (times its row mask) is 1."""
  logits = model(batch["inputs"]).astype(jnp.float32)
  weights = batch["mask"] * batch["row_mask"][:, None]
  return {"loss": metrics.mean(optax.softmax_cross_entropy_with_integer_labels(
              logits, batch["targets"]), weights),
          "accuracy": metrics.mean(jnp.argmax(logits, -1) == batch["targets"], weights)}


def _eval_split(rows: dict[str, np.ndarray], batch_size: int, pad_to_multiple: int) -> list:
  """Rows with a per-token `mask` as padded batches; the row mask is renamed `row_mask`."""
  out = []
  for batch in eval_batches(ArraySource({**rows, "token_mask": rows["mask"]}), batch_size,
                            pad_to_multiple=pad_to_multiple):
    out.append({"inputs": batch["inputs"], "targets": batch["targets"],
                "mask": batch["token_mask"], "row_mask": batch["mask"]})
  return out


def make_task(config: CrispEditConfig, seed: int, pad_to_multiple: int = 1) -> Task:
  """Pre-training of the fact LM on the fact/text mixture (AdamW, warm-up + cosine); held-out
  text and every fact are evaluated in batches padded to a multiple of `pad_to_multiple`."""
  cfg = config.lm
  facts = make_facts(cfg)
  train_text, _ = text_sources(cfg)
  every = [(s, r) for s in range(cfg.subjects) for r in range(cfg.relations)]
  splits = {"text": _eval_split(held_out_text(cfg), cfg.batch_size, pad_to_multiple),
            "fact": _eval_split(all_fact_rows(cfg, facts, every, range(len(TEMPLATES[0]))),
                                4 * cfg.batch_size, pad_to_multiple)}

  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1),
                                                max(cfg.train.steps, cfg.warmup_steps + 1), cfg.lr * 0.05)
  return Task(init_model=lambda rngs: fact_lm(cfg, facts.vocab_size, rngs=rngs),
              optimizer=optax.adamw(schedule, b2=0.98, weight_decay=0.01), loss_fn=_loss_fn,
              train_data=MixtureBatches(cfg, facts, train_text, seed), eval_data=splits,
              eval_fn=evaluate)


# ---- the editing study ----


_forward = nnx.jit(lambda model, tokens: model(tokens))


def _accuracy(model, rows) -> float:
  logits = _forward(model, jnp.asarray(rows["inputs"]))
  correct = np.asarray(jnp.argmax(logits, -1)) == rows["targets"]
  return float(np.sum(correct * rows["mask"]) / np.sum(rows["mask"]))


def _text_loss(model, rows) -> float:
  return float(_masked_ce(_forward(model, jnp.asarray(rows["inputs"])), rows))


def edit_sets(config: LMConfig, facts: Facts, seed: int):
  """Edited facts with their new objects, and the locality facts (disjoint)."""
  rng = np.random.default_rng([seed, 99])
  pairs = [(s, r) for s in range(config.subjects) for r in range(config.relations)]
  order = rng.permutation(len(pairs))
  edited = [pairs[i] for i in order[:config.edits]]
  local = [pairs[i] for i in order[config.edits:config.edits + config.locality_facts]]
  new = {}
  for s, r in edited:
    choices = [o for o in facts.candidates(r) if o != facts.objects[s, r]]
    new[(s, r)] = int(rng.choice(choices))
  return edited, new, local


def edit_study(model: TinyLM, config: CrispEditConfig, seed: int,
               editors: tuple[str, ...] = tuple(EDITORS)) -> dict[str, dict[str, float]]:
  """Runs the editors (FT, CrispEdit, A-only null space) on the trained LM; metrics per editor."""
  cfg, e = config.lm, config.lm_edit
  facts = make_facts(cfg)
  edited, new, local = edit_sets(cfg, facts, seed)
  rows = lambda pairs, templates, obj: fact_rows(
      facts, [(s, r, t, obj(s, r)) for s, r in pairs for t in templates], cfg.seq_len, "object")
  edit_templates = [t for t in range(len(TEMPLATES[0])) if t != HELD_OUT_TEMPLATE]
  edit_batch = rows(edited, edit_templates, lambda s, r: new[(s, r)])
  gen_batch = rows(edited, [HELD_OUT_TEMPLATE], lambda s, r: new[(s, r)])
  local_batch = rows(local, range(len(TEMPLATES[0])), lambda s, r: facts.objects[s, r])
  old_batch = rows(edited, edit_templates, lambda s, r: facts.objects[s, r])
  text = held_out_text(cfg)
  train_text, _ = text_sources(cfg)
  mixture = MixtureBatches(cfg, facts, train_text, seed + 1_000)  # fresh draws, not the training ones
  capability = [mixture.batch(i) for i in range(cfg.factor_batches)]
  layer = edited_layer(cfg)
  factors, tokens = collect_kfac_factors(model, [layer], capability, logits_fn,
                                         label_mode=e.label_mode, rng=jax.random.key(seed))
  base = {"locality": _accuracy(model, local_batch), "text_loss": _text_loss(model, text),
          "edit_success": _accuracy(model, edit_batch), "old_accuracy": _accuracy(model, old_batch),
          "factor_tokens": tokens}
  out = {"base": base}
  kernel = lambda m: np.asarray(m.layers[cfg.edit_layer].down.kernel[...])
  for name in editors:
    method = EDITORS[name]
    new_model, result = crisp_edit(
        model, edit_batch, layer_paths=[layer], logits_fn=logits_fn, method=method,
        factors=factors, energy=e.energy, project=e.project, learning_rate=e.lr,
        max_steps=e.max_steps, target_loss=e.target_loss)
    delta = kernel(new_model) - kernel(model)
    leak = 0.0
    if method == "crispedit":  # the applied change must lie in the low-curvature subspace
      basis = kfac_eigenbasis(next(iter(factors.values())), e.energy)
      leak = float(np.linalg.norm(delta - np.asarray(kfac_project(jnp.asarray(delta), basis)))
                   / max(np.linalg.norm(delta), 1e-30))
    text_loss = _text_loss(new_model, text)
    locality = _accuracy(new_model, local_batch)
    out[name] = {
        "edit_success": _accuracy(new_model, edit_batch),
        "generalization": _accuracy(new_model, gen_batch),
        "locality": locality,
        "locality_drop_points": 100.0 * (base["locality"] - locality),
        "text_loss": text_loss,
        "text_loss_increase_pct": 100.0 * (text_loss / base["text_loss"] - 1.0),
        "steps": result.steps,
        "edit_loss": result.edit_loss,
        "subspace_leak": leak,
    }
  return out
