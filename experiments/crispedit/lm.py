"""Fact editing in a tiny transformer LM (CrispEdit, arXiv 2602.15823, an LLM-editing paper).

Data. A fact table `(subject, relation) -> object`: subjects and objects are single extra tokens
after the 256 byte tokens; each relation is written with 4 byte-level templates
(e.g. `"Where does <s> live? In <o>"`). A 2-layer pre-norm transformer is trained with the shared
loop on rows that are fact sentences (any template) or windows of Python standard-library source.

Study. `edits` facts get a new object of the same relation. Each editor changes only the MLP down
projection of one block, with the edit loss on the object token of templates 0-2:
fine-tuning (FT), CrispEdit (K-FAC factors of that layer on fresh batches of the pre-training
mixture, energy τ) in the authors' configuration (empirical-Fisher factors, gradient projected
before Adam: the claims gate on it) and ours (sampled labels, gradient and update projected),
and the A-only null space. Measured: edit success (templates 0-2), generalization (the held-out
template 3), locality (accuracy of `locality_facts` unedited facts over all templates), and
capability (loss on held-out standard-library files).

Sequential study (the "scalable" of the title): `sequential_edits` facts edited in batches of
`lm_edit.batch_size` facts (the authors' 32) with the factors computed once, one Adam over the
stream, a batch already below the stop loss skipped; the same metrics after each batch, against
sequential fine-tuning.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core import metrics
from jaxpapers.core.train import Task
from jaxpapers.data import ArraySource, IndexedBatches, TextSource, eval_batches, stdlib_paths
from jaxpapers.editing import crisp_edit, sequential_edit, split_edits
from jaxpapers.nn import partitioning as pt
from jaxpapers.nn.attention import CausalSelfAttention
from jaxpapers.nn.embedding import embed_lookup
from jaxpapers.nn.tiny_lm import TinyLM
from jaxpapers.optim import kfac_project

from . import editors as editors_lib
from .config import CrispEditConfig, LMConfig

TEMPLATES = (
    ("{s} lives in {o}", "The home of {s} is {o}", "{s} resides in {o}", "Where does {s} live? In {o}"),
    ("{s} works as a {o}", "The job of {s} is {o}", "{s} is employed as a {o}", "By trade, {s} is a {o}"),
    ("{s} likes {o}", "The favourite of {s} is {o}", "{s} enjoys {o}", "Ask {s} what they love: {o}"),
)
HELD_OUT_TEMPLATE = 3
EDITORS = ("ft", "crispedit", "crispedit_ours", "a_only")  # names of editors.EDITORS
SEQUENTIAL_EDITORS = ("ft", "crispedit", "crispedit_ours")
SMOKE_EDITORS = ("crispedit_ours",)  # the subspace check of our configuration


# ---- model ----


class TokenMLP(nnx.Module):
  """`gelu(x W_up) W_down`, bias-free, with `up` and the GELU on the tokens flattened to `[tokens, d]`.

  TinyLM's own GELU MLP with the leading axes merged around `up`: the same parameters (drawn in
  the same order: `up`, then `down`) and bit-identical outputs and gradients (measured on this
  model's shapes), but a faster backward on XLA's CPU backend (jax 0.10.2): on `[B, T, F]`
  activations it fuses the GELU backward with a strided transpose into the operand of `up`'s
  weight gradient (90 of the 166 ms of an MLP forward and backward at the small preset's
  `[64, 32, 2048]`; 64 ms flattened). `down` keeps the `[B, T, F]` input (the K-FAC taps read it
  with the batch's `[B, T]` token mask).
  """

  def __init__(self, d_model: int, hidden: int, *, rngs: nnx.Rngs):
    self.up = nnx.Linear(d_model, hidden, use_bias=False, rngs=rngs,
                         kernel_metadata=pt.metadata((pt.EMBED, pt.MLP)))
    self.down = nnx.Linear(hidden, d_model, use_bias=False, rngs=rngs,
                           kernel_metadata=pt.metadata((pt.MLP, pt.EMBED)))

  def hidden(self, x: jax.Array) -> jax.Array:
    """`gelu(x W_up)` of `x [..., d]`, as `[..., hidden]`."""
    return jax.nn.gelu(self.up(x.reshape(-1, x.shape[-1]))).reshape(*x.shape[:-1], -1)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down(self.hidden(x))


def fact_lm(config: LMConfig, vocab_size: int, *, rngs: nnx.Rngs) -> TinyLM:
  """The shared tiny LM with causal RoPE attention and a bias-free GELU MLP (`TokenMLP`), N(0, 1)
  embedding, untied bias-free head (`layers[l].mixer.qkv`, `.mixer.out`, `.mlp.up`, `.mlp.down`)."""
  d = config.d_model
  return TinyLM(vocab_size, d, config.num_layers,
                mixer=lambda r: CausalSelfAttention(d, config.num_heads, rngs=r),
                mlp_hidden=config.mlp_width, mlp=lambda r: TokenMLP(d, config.mlp_width, rngs=r),
                embed_std=1.0, head_bias=False, rngs=rngs)


def logits_fn(model: TinyLM, batch: dict[str, Any]) -> jax.Array:
  return model(batch["inputs"])


def edited_layer(config: LMConfig) -> tuple:
  return ("layers", config.edit_layer, "mlp", "down")


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


@functools.lru_cache(maxsize=4)
def text_sources(config: LMConfig) -> tuple[TextSource, TextSource]:
  """Train and held-out byte windows of standard-library sources (disjoint files)."""
  paths = stdlib_paths()
  held_out = paths[::10]
  train = [p for p in paths if p not in set(held_out)]
  return (TextSource(train, seq_len=config.seq_len, max_bytes=4_000_000),
          TextSource(held_out, seq_len=config.seq_len, max_bytes=400_000))


class MixtureBatches(IndexedBatches):
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


def _masked_ce(logits, batch):
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["targets"])
  return jnp.sum(ce * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)


def _loss_fn(model, batch, rng):  # pylint: disable=unused-argument
  return _masked_ce(model(batch["inputs"]), batch), {}


@functools.lru_cache(maxsize=4)
def held_out_text(config: LMConfig) -> dict[str, np.ndarray]:
  """Evenly spaced windows of the held-out files (cached per config: read-only arrays)."""
  _, held_out = text_sources(config)
  n = min(config.eval_text_batches * config.batch_size, len(held_out))
  rows = [held_out[i] for i in np.linspace(0, len(held_out) - 1, n).astype(int)]
  out = {k: np.stack([r[k] for r in rows]) for k in ("inputs", "targets")}
  out["mask"] = np.ones(out["inputs"].shape, np.float32)
  for v in out.values():
    v.flags.writeable = False
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


def edit_sets(config: LMConfig, facts: Facts, seed: int, edits: int | None = None,
              locality_facts: int | None = None):
  """Edited facts with their new objects, and the locality facts (disjoint).

  `edits` / `locality_facts` default to the config's; with more edits the first ones are the
  same facts with the same new objects (one permutation, objects drawn in order).
  """
  edits = config.edits if edits is None else edits
  locality_facts = config.locality_facts if locality_facts is None else locality_facts
  rng = np.random.default_rng([seed, 99])
  pairs = [(s, r) for s in range(config.subjects) for r in range(config.relations)]
  order = rng.permutation(len(pairs))
  edited = [pairs[i] for i in order[:edits]]
  local = [pairs[i] for i in order[edits:edits + locality_facts]]
  new = {}
  for s, r in edited:
    choices = [o for o in facts.candidates(r) if o != facts.objects[s, r]]
    new[(s, r)] = int(rng.choice(choices))
  return edited, new, local


EDIT_TEMPLATES = tuple(t for t in range(len(TEMPLATES[0])) if t != HELD_OUT_TEMPLATE)


def _fact_rows(config: LMConfig, facts: Facts, pairs, templates, obj) -> dict[str, np.ndarray]:
  """Object-token rows of `pairs` x `templates` (fact-major), objects from `obj(s, r)`."""
  return fact_rows(facts, [(s, r, t, obj(s, r)) for s, r in pairs for t in templates],
                   config.seq_len, "object")


def object_span(rows: dict[str, np.ndarray]) -> int:
  """Positions up to the last object of `rows`, rounded up to a multiple of 8 (shared shapes)."""
  return min(-(-(int(np.argmax(rows["mask"], -1).max()) + 1) // 8) * 8, rows["mask"].shape[1])


def capability_batches(config: LMConfig, seed: int) -> list[dict[str, np.ndarray]]:
  """Fresh pre-training-mixture batches (not the training draws) for the K-FAC factors."""
  train_text, _ = text_sources(config)
  mixture = MixtureBatches(config, make_facts(config), train_text, seed + 1_000)
  return [mixture.batch(i) for i in range(config.factor_batches)]


def study_bases(model: TinyLM, config: CrispEditConfig, seed: int,
                editors: tuple[str, ...] = tuple(EDITORS)) -> tuple[dict, float]:
  """The eigenbases of edit set `seed`'s editors on its capability batches, and their tokens."""
  return editors_lib.capability_bases(model, [edited_layer(config.lm)],
                                      capability_batches(config.lm, seed), logits_fn, editors,
                                      config.lm_edit, jax.random.key(seed))


# ---- the edit loop's forward: from the edited layer's input, logits at the object only ----


@functools.partial(nnx.jit, static_argnames=("layer",))
def _prefix(model: TinyLM, tokens: jax.Array, layer: int) -> tuple[jax.Array, jax.Array]:
  """Block `layer`'s residual stream before its MLP and the input of its down projection.

  Neither depends on that down projection's kernel (the edited weight), so the edit loop
  computes them once; TinyLM's forward up to there (embedding, blocks before `layer`, its
  attention, `gelu(up(norm(.)))`).
  """
  x = embed_lookup(model.embed[...], tokens)
  for block in list(model.layers)[:layer]:
    x = block(x)
  block = model.layers[layer]
  resid = x + block.mixer(block.mixer_norm(x))
  return resid, block.mlp.hidden(block.mlp_norm(resid))


def edit_inputs(model: TinyLM, rows: dict[str, np.ndarray], layer: int, length: int) -> dict[str, Any]:
  """The edit loop's batch for rows with one masked (object) position each.

  Args:
    model: the base LM.
    rows: `inputs/targets/mask` [n, seq_len] from `fact_rows(..., "object")`.
    layer: the block whose down projection is edited.
    length: positions kept (at least the last object position + 1: attention is causal, so the
      later positions do not change the logits at the objects).

  Returns:
    `resid` [n, length, d] and `hidden` [n, length, mlp_width] (`_prefix`), `pos` [n] (the
    object positions), `targets` [n] (the objects) and `mask` [n] (1 on real rows).
  """
  pos = np.argmax(rows["mask"], -1)
  if np.any(pos >= length):
    raise ValueError(f"edit_inputs: object positions up to {pos.max()} do not fit length {length}")
  resid, hidden = _prefix(model, jnp.asarray(rows["inputs"][:, :length]), layer)
  return {"resid": resid, "hidden": hidden, "pos": jnp.asarray(pos, jnp.int32),
          "targets": jnp.asarray(rows["targets"][np.arange(len(pos)), pos]),
          "mask": jnp.asarray(rows["mask"].max(-1))}


@jax.custom_vjp
def _down_product(hidden: jax.Array, hidden_t: jax.Array, kernel: jax.Array) -> jax.Array:
  """`hidden @ kernel` (a bias-free Dense layer) whose weight gradient is `hidden_t @ g`.

  `hidden` [N, F] is a constant of the edit loop; with its transpose `hidden_t` [F, N] stored,
  the weight gradient is a row-major product (XLA's CPU dot contracting `hidden`'s leading axis
  is about twice as slow). No gradient flows to `hidden`.
  """
  return hidden @ kernel


def _down_product_fwd(hidden, hidden_t, kernel):
  return hidden @ kernel, (hidden_t, kernel)


def _down_product_bwd(residuals, g):
  hidden_t, kernel = residuals
  return (jnp.zeros((hidden_t.shape[1], hidden_t.shape[0]), hidden_t.dtype), jnp.zeros_like(hidden_t),
          (hidden_t @ g).astype(kernel.dtype))


_down_product.defvjp(_down_product_fwd, _down_product_bwd)


def with_transposed_hidden(batch: dict[str, Any]) -> dict[str, Any]:
  """An `edit_inputs` batch plus `hidden_t` (`hidden` as `[F, tokens]`) for the edit loop."""
  hidden = jnp.asarray(batch["hidden"])
  return {**batch, "hidden_t": jnp.asarray(hidden.reshape(-1, hidden.shape[-1]).T.copy())}


@functools.lru_cache(maxsize=None)
def tail_logits_fn(layer: int, everywhere: bool = False):
  """`(model, edit_inputs batch) -> logits [n, vocab]` at the object positions.

  TinyLM's forward from block `layer`'s down projection on: that block's output, the later
  blocks (the last one's position-wise MLP, the final norm and the head only at the object
  positions). One function object per layer, so every edit shares the compiled loop. With
  `everywhere`, logits `[n, T, vocab]` at every position (the batch needs no `pos`).
  """

  def logits(model: TinyLM, batch: dict[str, Any]) -> jax.Array:
    blocks = list(model.layers)
    hidden = batch["hidden"]
    hidden = hidden.reshape(-1, hidden.shape[-1])  # the down projection on [tokens, F] (TokenMLP)
    if "hidden_t" in batch:  # the edit loop: its weight gradient from the stored transpose
      down = _down_product(hidden, batch["hidden_t"], blocks[layer].mlp.down.kernel[...])
    else:
      down = blocks[layer].mlp.down(hidden)
    x = batch["resid"] + down.reshape(batch["resid"].shape)
    at_objects = (lambda h: h) if everywhere else (lambda h: h[jnp.arange(h.shape[0]), batch["pos"]])
    if layer == len(blocks) - 1:
      x = at_objects(x)
    for i in range(layer + 1, len(blocks)):
      block = blocks[i]
      if i < len(blocks) - 1:
        x = block(x)
      else:
        x = at_objects(x + block.mixer(block.mixer_norm(x)))
        x = x + block.mlp(block.mlp_norm(x))
    return model.head(model.norm(x))

  return logits


@functools.partial(nnx.jit, static_argnames=("layer",))
def _object_correct(model: TinyLM, batch: dict[str, Any], layer: int) -> jax.Array:
  return (jnp.argmax(tail_logits_fn(layer)(model, batch), -1) == batch["targets"]).astype(jnp.float32)


@functools.partial(nnx.jit, static_argnames=("layer",))
def _tail_text_loss(model: TinyLM, batch: dict[str, Any], layer: int) -> jax.Array:
  return _masked_ce(tail_logits_fn(layer, everywhere=True)(model, batch), batch)


class Evaluation:
  """Accuracies and the text loss of edits of block `layer`'s down projection of one base model.

  The base model's activations below the edited weight (`_prefix`) do not depend on it, so they
  are computed once per row set and every edited model is evaluated from them
  (`tail_logits_fn`); fact rows are scored at their object position only.

  Args:
    model: the base LM.
    layer: the edited block.
    object_rows: named `fact_rows(..., "object")` row sets (one object position per row).
    text: held-out text rows (`inputs/targets/mask`, every position scored).
  """

  def __init__(self, model: TinyLM, layer: int, object_rows: dict[str, dict[str, np.ndarray]],
               text: dict[str, np.ndarray]):
    self.layer = layer
    self.objects = {k: edit_inputs(model, rows, layer, object_span(rows)) for k, rows in object_rows.items()}
    resid, hidden = _prefix(model, jnp.asarray(text["inputs"]), layer)
    self.text = {"resid": resid, "hidden": hidden, "targets": jnp.asarray(text["targets"]),
                 "mask": jnp.asarray(text["mask"])}

  def correct(self, model: TinyLM, name: str) -> np.ndarray:
    """Per row of set `name`: 1 where the argmax at the object is the target."""
    return np.asarray(_object_correct(model, self.objects[name], self.layer))

  def accuracy(self, model: TinyLM, name: str) -> float:
    return float(np.mean(self.correct(model, name)))

  def text_loss(self, model: TinyLM) -> float:
    return float(_tail_text_loss(model, self.text, self.layer))


def _leak(delta: np.ndarray, basis) -> float:
  """|ΔW - P(ΔW)| / |ΔW|: how far the applied change is outside the basis' subspace."""
  projected = np.asarray(kfac_project(jnp.asarray(delta), basis))
  return float(np.linalg.norm(delta - projected) / max(np.linalg.norm(delta), 1e-30))


def edit_study(model: TinyLM, config: CrispEditConfig, seed: int,
               editors: tuple[str, ...] = tuple(EDITORS), bases: tuple[dict, float] | None = None
               ) -> dict[str, dict[str, float]]:
  """Runs the editors (FT, CrispEdit authors' and ours, A-only) on the trained LM, metrics per editor.

  Args:
    model: the trained LM.
    config: the experiment config.
    seed: the edit set (edited facts, new objects, locality facts, factor batches, labels).
    editors: editor names (`editors.EDITORS`).
    bases: `study_bases(model, config, seed, editors)` when already computed.
  """
  cfg, e = config.lm, config.lm_edit
  facts = make_facts(cfg)
  edited, new, local = edit_sets(cfg, facts, seed)
  new_object, old_object = (lambda s, r: new[(s, r)]), (lambda s, r: facts.objects[s, r])
  evaluation = Evaluation(model, cfg.edit_layer, {
      "edit": _fact_rows(cfg, facts, edited, EDIT_TEMPLATES, new_object),
      "gen": _fact_rows(cfg, facts, edited, [HELD_OUT_TEMPLATE], new_object),
      "local": _fact_rows(cfg, facts, local, range(len(TEMPLATES[0])), old_object),
      "old": _fact_rows(cfg, facts, edited, EDIT_TEMPLATES, old_object)}, held_out_text(cfg))
  layer = edited_layer(cfg)
  bases, tokens = study_bases(model, config, seed, editors) if bases is None else bases
  base = {"locality": evaluation.accuracy(model, "local"), "text_loss": evaluation.text_loss(model),
          "edit_success": evaluation.accuracy(model, "edit"), "old_accuracy": evaluation.accuracy(model, "old"),
          "factor_tokens": tokens}
  out = {"base": base}
  kernel = lambda m: np.asarray(m.layers[cfg.edit_layer].mlp.down.kernel[...])
  edit_batch = with_transposed_hidden(evaluation.objects["edit"])
  for name in editors:
    method, project, labels = editors_lib.settings(name, e)
    basis = bases.get((method, labels), {})
    new_model, result = crisp_edit(
        model, edit_batch, layer_paths=[layer], logits_fn=tail_logits_fn(cfg.edit_layer),
        method=method, bases=basis, project=project, learning_rate=e.lr, max_steps=e.max_steps,
        target_loss=e.target_loss)
    delta = kernel(new_model) - kernel(model)
    text_loss = evaluation.text_loss(new_model)
    locality = evaluation.accuracy(new_model, "local")
    out[name] = {
        "edit_success": evaluation.accuracy(new_model, "edit"),
        "generalization": evaluation.accuracy(new_model, "gen"),
        "locality": locality,
        "locality_drop_points": 100.0 * (base["locality"] - locality),
        "text_loss": text_loss,
        "text_loss_increase_pct": 100.0 * (text_loss / base["text_loss"] - 1.0),
        "steps": result.steps,
        "edit_loss": result.edit_loss,
        # the applied change against the editor's own subspace (CrispEdit only)
        "subspace_leak": _leak(delta, next(iter(basis.values()))) if method == "crispedit" else 0.0,
        "project": project if method != "finetune" else "none",
        "label_mode": labels if method == "crispedit" else "none",
    }
  return out


def sequential_study(model: TinyLM, config: CrispEditConfig, seed: int, bases: tuple[dict, float],
                     editors: tuple[str, ...] = SEQUENTIAL_EDITORS) -> dict[str, Any]:
  """Sequential editing of `lm.sequential_edits` facts in batches of `lm_edit.batch_size` facts.

  The factors (and eigenbases) of edit set `seed` are computed once and reused for every batch
  (`bases`); after each batch: edit success on every edit so far, on the first batch (retention)
  and on the current one, generalization (held-out template), locality on all the other facts
  and the held-out text loss.

  Returns:
    {"base": {...}, "batches": [facts per batch], editor: [metrics after each batch]}.
  """
  cfg, e = config.lm, config.lm_edit
  facts = make_facts(cfg)
  n = cfg.sequential_edits
  edited, new, local = edit_sets(cfg, facts, seed, n, cfg.subjects * cfg.relations - n)
  per_fact = len(EDIT_TEMPLATES)
  new_object, old_object = (lambda s, r: new[(s, r)]), (lambda s, r: facts.objects[s, r])
  evaluation = Evaluation(model, cfg.edit_layer, {
      "edit": _fact_rows(cfg, facts, edited, EDIT_TEMPLATES, new_object),
      "gen": _fact_rows(cfg, facts, edited, [HELD_OUT_TEMPLATE], new_object),
      "local": _fact_rows(cfg, facts, local, range(len(TEMPLATES[0])), old_object)}, held_out_text(cfg))
  batches = [with_transposed_hidden(b) for b in split_edits(
      {k: np.asarray(v) for k, v in evaluation.objects["edit"].items()}, e.batch_size * per_fact)]
  sizes = [min(e.batch_size, n - i * e.batch_size) for i in range(len(batches))]
  base = {"locality": evaluation.accuracy(model, "local"), "text_loss": evaluation.text_loss(model),
          "edit_success": evaluation.accuracy(model, "edit"), "locality_facts": len(local)}
  layer = edited_layer(cfg)

  def after_batch(edited_model, i, result):
    done = sum(sizes[:i + 1])
    by_fact = evaluation.correct(edited_model, "edit").reshape(n, per_fact).mean(-1)
    gen = evaluation.correct(edited_model, "gen")
    locality = evaluation.accuracy(edited_model, "local")
    text_loss = evaluation.text_loss(edited_model)
    return {"facts_edited": done,
            "edit_success": float(by_fact[:done].mean()),
            "batch_success": float(by_fact[done - sizes[i]:done].mean()),
            "first_batch_success": float(by_fact[:sizes[0]].mean()),
            "generalization": float(gen[:done].mean()),
            "locality": locality,
            "locality_drop_points": 100.0 * (base["locality"] - locality),
            "text_loss_increase_pct": 100.0 * (text_loss / base["text_loss"] - 1.0),
            "steps": result.steps, "skipped": result.skipped, "edit_loss": result.edit_loss}

  out: dict[str, Any] = {"base": base, "batches": sizes}
  for name in editors:
    method, project, labels = editors_lib.settings(name, e)
    _, _, records = sequential_edit(
        model, batches, layer_paths=[layer], logits_fn=tail_logits_fn(cfg.edit_layer), method=method,
        bases=bases[0].get((method, labels), {}), project=project, learning_rate=e.lr,
        max_steps=e.max_steps, target_loss=e.target_loss, after_batch=after_batch)
    out[name] = records
  return out
