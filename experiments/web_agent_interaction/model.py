"""The intervention predictor and its data (arXiv 2602.17588, "Intervention modelling").

The paper frames intervention modelling as step-wise binary classification: at each agent step,
from the screenshot, the accessibility tree, the history of human and agent actions and the
agent's proposed action, predict "hand over to the user" (1) or "continue" (0); it fine-tunes
Gemma-27B and LLaVA-8B by SFT, one general model and one per interaction style. Ours [ours, the
spec's proposal]: the synthetic corpus' observed step features (`jaxpapers.evals.web_users`)
stand in for the page and history, and `InterventionPredictor` (an `nnx.GRUCell` over the steps
of a trajectory, or an MLP on each step alone) trained with class-weighted BCE stands in for the
LM; the style-conditioned variant adds an embedding of the user's discovered style (one model
with a style input in place of the paper's one model per style).

Data: trajectories split by trajectory into train / test (the paper's split), padded to
`max_steps` with a `valid` mask; styles are discovered by k-means on the per-user features of the
training trajectories only (no test label is seen).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxpapers.core.train import Task
from jaxpapers.data import ArraySource, full_batch
from jaxpapers.evals import web_users

from .config import WebAgentConfig

NUM_FEATURES = len(web_users.FEATURES)


@dataclasses.dataclass(frozen=True)
class Split:
  """One seed's corpus, split and discovered styles.

  Attributes:
    corpus: every decision step of every trajectory.
    test: [trajectories] True for a held-out trajectory.
    styles: [users] discovered style (k-means cluster) of each user, from training steps only.
    ari: adjusted Rand index of `styles` against the true styles.
    features: [users, 4] per-user style features of the training steps.
  """

  corpus: web_users.Corpus
  test: np.ndarray
  styles: np.ndarray
  ari: float
  features: np.ndarray

  def rows(self, test: bool) -> np.ndarray:
    """Boolean mask of the corpus rows of the test (or training) trajectories."""
    return self.test[self.corpus.trajectory] == test


def _data_key(config: WebAgentConfig) -> tuple:
  return (config.num_users, config.trajectories_per_user, config.min_steps, config.max_steps,
          config.error_rate, config.risk_rate, config.error_noise, config.test_fraction,
          config.styles, config.seed)


@functools.lru_cache(maxsize=16)
def _split(key: tuple) -> Split:
  users, per_user, lo, hi, error_rate, risk_rate, noise, test_fraction, k, seed = key
  corpus = web_users.synthetic_users(users, per_user, lo, hi, seed=seed, error_rate=error_rate,
                                     risk_rate=risk_rate, error_noise=noise)
  n = int(corpus.trajectory.max()) + 1
  order = np.random.default_rng([seed, 1]).permutation(n)
  test = np.zeros(n, bool)
  test[order[:max(1, round(test_fraction * n))]] = True
  train_rows = ~test[corpus.trajectory]
  features = web_users.style_features(corpus.select(train_rows))
  styles = web_users.discover_styles(features, k, seed=seed)
  return Split(corpus, test, styles, web_users.adjusted_rand_index(corpus.user_style, styles), features)


def split_of(config: WebAgentConfig) -> Split:
  """The corpus, split and discovered styles of `config` (cached: every stage sees the same)."""
  return _split(_data_key(config))


def padded(config: WebAgentConfig, split: Split, test: bool) -> dict[str, np.ndarray]:
  """The split's trajectories as padded arrays.

  Returns:
    {"x" [N, T, F] float32 features, "label" [N, T] int32, "valid" [N, T] float32, "style" [N]
    int32 discovered style of the trajectory's user, "length" [N] int32}, trajectories in
    corpus order, T = max_steps.
  """
  c = split.corpus.select(split.rows(test))
  cuts = np.flatnonzero(np.diff(c.trajectory)) + 1
  starts = np.r_[0, cuts]
  lengths = np.diff(np.r_[starts, len(c.label)])
  n, t = len(starts), config.max_steps
  x = np.zeros((n, t, NUM_FEATURES), np.float32)
  label = np.zeros((n, t), np.int32)
  valid = np.zeros((n, t), np.float32)
  traj = np.repeat(np.arange(n), lengths)
  x[traj, c.step] = c.features
  label[traj, c.step] = c.label
  valid[traj, c.step] = 1.0
  return {"x": x, "label": label, "valid": valid, "style": split.styles[c.user[starts]].astype(np.int32),
          "length": lengths.astype(np.int32)}


class InterventionPredictor(nnx.Module):
  """Per-step intervention logits of a trajectory: `[N, T, F] -> [N, T]`.

  "gru": `h_t = GRUCell(h_{t-1}, [x_t ; e(style)])`, logit_t = Linear(h_t): step t sees steps
  0..t (the history), never a later one. "mlp": logit_t = Linear(ReLU(Linear([x_t ; e(style)]))).

  Args:
    num_features: F.
    hidden: hidden width.
    kind: "gru" or "mlp".
    num_styles: styles of the embedding (0: a general predictor, no style input).
    style_dim: width of the style embedding.
    rngs: parameter initialization.
  """

  def __init__(self, num_features: int, hidden: int, *, kind: str = "gru", num_styles: int = 0,
               style_dim: int = 4, rngs: nnx.Rngs):
    self.kind, self.num_styles = kind, num_styles
    width = num_features + (style_dim if num_styles else 0)
    self.style = nnx.Embed(num_styles, style_dim, rngs=rngs) if num_styles else None
    if kind == "gru":
      self.cell = nnx.GRUCell(width, hidden, rngs=rngs)
    else:
      self.layer = nnx.Linear(width, hidden, rngs=rngs)
    self.head = nnx.Linear(hidden, 1, rngs=rngs)

  def __call__(self, x: jax.Array, style: jax.Array | None = None) -> jax.Array:
    if self.num_styles:
      e = self.style(style)
      x = jnp.concatenate([x, jnp.broadcast_to(e[:, None], (*x.shape[:2], e.shape[-1]))], -1)
    if self.kind == "gru":
      h0 = jnp.zeros((x.shape[0], self.cell.hidden_features), x.dtype)
      _, h = jax.lax.scan(lambda h, xt: self.cell(h, xt), h0, jnp.swapaxes(x, 0, 1))
      h = jnp.swapaxes(h, 0, 1)
    else:
      h = jax.nn.relu(self.layer(x))
    return self.head(h)[..., 0]


def make_predictor(config: WebAgentConfig, rngs: nnx.Rngs) -> InterventionPredictor:
  styles = config.styles if config.conditioning == "style" else 0
  return InterventionPredictor(NUM_FEATURES, config.hidden, kind=config.predictor, num_styles=styles,
                               style_dim=config.style_dim, rngs=rngs)


def positive_weight(config: WebAgentConfig, labels: np.ndarray, valid: np.ndarray) -> float:
  """`config.positive_weight`, or (0) negatives over positives of the valid training steps."""
  if config.positive_weight > 0:
    return float(config.positive_weight)
  pos = float(np.sum(labels * valid))
  return float((np.sum(valid) - pos) / max(pos, 1.0))


def weighted_bce(logits: jax.Array, labels: jax.Array, weights: jax.Array, pos_weight: float) -> jax.Array:
  """Class-weighted BCE averaged over the weighted steps: w+ y log s + (1 - y) log (1 - s)."""
  y = labels.astype(jnp.float32)
  per_step = -(pos_weight * y * jax.nn.log_sigmoid(logits) + (1 - y) * jax.nn.log_sigmoid(-logits))
  return (per_step * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def make_task(config: WebAgentConfig, mesh, inputs=None) -> Task:  # pylint: disable=unused-argument
  """Stage `train`: class-weighted BCE on the training trajectories, full batch, Adam."""
  data = padded(config, split_of(config), test=False)
  w_pos = positive_weight(config, data["label"], data["valid"])
  source = ArraySource({k: data[k] for k in ("x", "label", "valid", "style")})

  def loss_fn(model, batch, rng):  # pylint: disable=unused-argument
    weights = batch["valid"] * batch["mask"].astype(jnp.float32)[:, None]
    logits = model(batch["x"], batch["style"])
    loss = weighted_bce(logits, batch["label"], weights, w_pos)
    hit = ((logits >= 0) == (batch["label"] == 1)).astype(jnp.float32)
    return loss, {"step_accuracy": (hit * weights).sum() / jnp.maximum(weights.sum(), 1.0)}

  return Task(init_model=functools.partial(make_predictor, config), optimizer=optax.adam(config.lr),
              loss_fn=loss_fn, train_data=full_batch(source, pad_to_multiple=mesh.size))


@nnx.jit
def _probabilities(model, x, style):
  return jax.nn.sigmoid(model(x, style))


def predict(config: WebAgentConfig, model: nnx.Module, data: dict[str, np.ndarray]) -> list[np.ndarray]:
  """0/1 predictions (probability >= threshold) per trajectory, unpadded."""
  probs = np.asarray(_probabilities(model, jnp.asarray(data["x"]), jnp.asarray(data["style"])))
  return [(p[:n] >= config.threshold).astype(np.int64) for p, n in zip(probs, data["length"])]


def labels_of(data: dict[str, np.ndarray]) -> list[np.ndarray]:
  """The ground-truth interventions per trajectory, unpadded."""
  return [y[:n].astype(np.int64) for y, n in zip(data["label"], data["length"])]
