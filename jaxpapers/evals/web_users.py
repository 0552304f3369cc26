"""Synthetic human-agent web trajectories from four user styles, style features, style discovery.

Modeling Distinct Human Interaction in Web Agents (arXiv 2602.17588) finds four interaction
styles among CowCorpus' 20 users (hands-off supervision, hands-on oversight, collaborative
task-solving, full takeover) by k-means (k = 4) on four per-user features: intervention
frequency, intensity, normalised position in the trajectory and handback rate (the features and
the clustering as a secondary full-text review reports them). CowCorpus is not public, so
`synthetic_users` generates trajectories from four parametric styles of our own design
([ours]):

  * hands_off: never intervenes;
  * hands_on: frequent, short (one human action) interventions on agent errors and risky steps,
    quick handback;
  * collaborative: rare, late interventions of a few human actions, usually handed back;
  * takeover: intervenes once (on an error past the start) and never hands back.

Each decision step (the agent proposes an action, the human may intervene) carries a latent
agent-error flag, a risk flag, the normalised position, whether the previous action was human's,
and the count of earlier interventions in the trajectory. The predictor sees the error flag
through noise (`error_noise`), as a model sees a screenshot. `style_features` computes the four
per-user features and `discover_styles` clusters them with scikit-learn's k-means (k-means++
seeding, standardised features); `adjusted_rand_index` is scikit-learn's ARI.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import sklearn.cluster
import sklearn.metrics
import sklearn.preprocessing

STYLES = ("hands_off", "hands_on", "collaborative", "takeover")
FEATURES = ("error_seen", "risk", "position", "previous_human", "earlier_interventions")
STYLE_FEATURES = ("frequency", "intensity", "position", "handback_rate")


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Decision steps of every trajectory, flattened (row i is one agent step).

  Attributes:
    user: [N] user index.
    trajectory: [N] global trajectory index.
    step: [N] 0-based decision-step index within its trajectory.
    features: [N, len(FEATURES)] float32 observed features.
    label: [N] 1 where the human intervened at this step.
    intensity: [N] human actions taken after an intervention (0 where label is 0).
    handback: [N] 1 where an intervention was handed back to the agent.
    error: [N] the latent agent-error flag.
    user_style: [U] index into STYLES of each user's true style.
  """

  user: np.ndarray
  trajectory: np.ndarray
  step: np.ndarray
  features: np.ndarray
  label: np.ndarray
  intensity: np.ndarray
  handback: np.ndarray
  error: np.ndarray
  user_style: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.user_style)

  def select(self, rows: np.ndarray) -> Corpus:
    """The corpus restricted to the rows where `rows` (a boolean mask) is True."""
    fields = {f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self) if f.name != "user_style"}
    return Corpus(**fields, user_style=self.user_style)

  def trajectories(self, values: np.ndarray | None = None) -> list[np.ndarray]:
    """`values` (default: the labels) split into one array per trajectory, in row order."""
    values = self.label if values is None else np.asarray(values)
    cuts = np.flatnonzero(np.diff(self.trajectory)) + 1
    return np.split(values, cuts)


def _intervention(style: str, error: bool, risk: bool, position: float, rng: np.random.Generator,
                  remaining: int) -> tuple[bool, int, bool]:
  """(intervene, human actions, handback) of one decision step of a user of `style`."""
  if style == "hands_off":
    return False, 0, False
  if style == "hands_on":
    p = 0.85 if error else (0.4 if risk else 0.03)
    return bool(rng.random() < p), 1, bool(rng.random() < 0.95)
  if style == "collaborative":
    p = (0.6 if error else 0.1) if position > 0.55 else 0.02
    return bool(rng.random() < p), int(rng.integers(2, 4)), bool(rng.random() < 0.9)
  p = 0.7 if (error and position > 0.2) else 0.02  # takeover: the human finishes the task
  return bool(rng.random() < p), max(remaining, 1), False


def synthetic_users(num_users: int = 40, trajectories_per_user: int = 20, min_steps: int = 8,
                    max_steps: int = 15, *, seed: int = 0, error_rate: float = 0.25,
                    risk_rate: float = 0.15, error_noise: float = 0.1) -> Corpus:
  """Trajectories of `num_users` users, styles assigned in turn (user u has STYLES[u % 4]).

  Args:
    num_users: users (a multiple of 4 gives equal style groups).
    trajectories_per_user: trajectories per user.
    min_steps: shortest planned trajectory (decision steps).
    max_steps: longest planned trajectory; a takeover ends a trajectory early.
    seed: fixes everything.
    error_rate: probability that a proposed agent action is wrong.
    risk_rate: probability that a step is risky (payment, submission).
    error_noise: probability that the observed error flag is flipped.
  """
  if not 1 <= min_steps <= max_steps:
    raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
  rng = np.random.default_rng(seed)
  styles = np.arange(num_users) % len(STYLES)
  rows = {k: [] for k in ("user", "trajectory", "step", "features", "label", "intensity", "handback",
                          "error")}
  trajectory = 0
  for u in range(num_users):
    style = STYLES[styles[u]]
    for _ in range(trajectories_per_user):
      length = int(rng.integers(min_steps, max_steps + 1))
      previous_human, earlier = False, 0
      for t in range(length):
        position = t / max(length - 1, 1)
        error, risk = bool(rng.random() < error_rate), bool(rng.random() < risk_rate)
        seen = error != bool(rng.random() < error_noise)
        hit, actions, back = _intervention(style, error, risk, position, rng, length - t)
        rows["user"].append(u)
        rows["trajectory"].append(trajectory)
        rows["step"].append(t)
        rows["features"].append([seen, risk, position, previous_human, min(earlier, 5) / 5])
        rows["label"].append(hit)
        rows["intensity"].append(actions if hit else 0)
        rows["handback"].append(back if hit else False)
        rows["error"].append(error)
        previous_human = hit
        earlier += hit
        if hit and not back:
          break  # the human kept control: no further agent steps
      trajectory += 1
  ints = {k: np.asarray(rows[k], np.int32) for k in ("user", "trajectory", "step", "label", "intensity",
                                                       "handback", "error")}
  return Corpus(**ints, features=np.asarray(rows["features"], np.float32),
                user_style=styles.astype(np.int32))


def style_features(corpus: Corpus) -> np.ndarray:
  """[U, 4] per-user (frequency, intensity, position, handback rate); zeros for a user who never
  intervenes. Frequency: interventions per decision step; intensity: mean human actions per
  intervention; position: mean normalised position of the interventions; handback rate: share of
  interventions handed back."""
  out = np.zeros((corpus.num_users, len(STYLE_FEATURES)))
  position = corpus.features[:, FEATURES.index("position")]
  for u in range(corpus.num_users):
    mine = corpus.user == u
    hits = mine & (corpus.label == 1)
    if not mine.any() or not hits.any():
      continue
    out[u] = (hits.sum() / mine.sum(), corpus.intensity[hits].mean(), position[hits].mean(),
              corpus.handback[hits].mean())
  return out


def discover_styles(features: np.ndarray, k: int = 4, seed: int = 0) -> np.ndarray:
  """k-means cluster labels [U] of standardised per-user features (scikit-learn, k-means++, 10 inits)."""
  scaled = sklearn.preprocessing.StandardScaler().fit_transform(np.asarray(features, np.float64))
  return sklearn.cluster.KMeans(k, n_init=10, random_state=seed).fit_predict(scaled).astype(np.int32)


def adjusted_rand_index(true_labels, cluster_labels) -> float:
  """Adjusted Rand index of a clustering against the true groups (scikit-learn)."""
  return float(sklearn.metrics.adjusted_rand_score(true_labels, cluster_labels))
