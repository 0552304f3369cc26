"""RolloutBuffer against a plain-Python model of its selection, FIFO and device alternation."""

import numpy as np
import pytest

from jaxpapers import rl


def python_select(rewards, g, threshold=0.5):
  """The rule in words: take successes and failures in arrival order, as many successes as
  min(#successes, max(G // 2, G - #failures)), the rest failures."""
  wins = [i for i, r in enumerate(rewards) if r >= threshold]
  losses = [i for i, r in enumerate(rewards) if r < threshold]
  k = min(len(wins), max(g // 2, g - len(losses)))
  return sorted(wins[:k] + losses[:g - k])


class PythonBuffer:
  """A list-based model: offered groups -> kept groups (filter on the selected rewards) -> FIFO."""

  def __init__(self, g, b, devices=1, alternate=False):
    self.g, self.b, self.devices, self.alternate = g, b, devices, alternate
    self.fifo, self.turn = [], 0

  def add(self, prompts, devices, rewards):
    for p, d, r in zip(prompts, devices, rewards):
      idx = python_select(list(r), self.g)
      kept = [r[i] for i in idx]
      if len(set(kept)) > 1:
        self.fifo.append((int(p), int(d), idx))

  def pop(self):
    if self.alternate:
      mine = [x for x in self.fifo if x[1] == self.turn][:self.b]
      self.turn = (self.turn + 1) % self.devices
    else:
      mine = self.fifo[:self.b]
    for x in mine:
      self.fifo.remove(x)
    return mine

  def ready(self):
    pool = [x for x in self.fifo if not self.alternate or x[1] == self.turn]
    return len(pool) >= self.b


@pytest.mark.parametrize("g", [4, 8])
def test_selection_matches_the_python_rule(g):
  rng = np.random.default_rng(g)
  for _ in range(200):
    n = rng.integers(g, 3 * g)
    rewards = (rng.random(n) < rng.random()).astype(float)
    assert rl.select_rollouts(rewards, g).tolist() == python_select(list(rewards), g)
  assert rl.select_rollouts(np.arange(10.0), 4, select="all").tolist() == [0, 1, 2, 3]


def test_balanced_pick_caps_successes_at_half_when_failures_suffice():
  r = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0], float)
  idx = rl.select_rollouts(r, 8)
  assert r[idx].sum() == 4 and len(idx) == 8
  many_wins = np.array([1] * 14 + [0] * 2, float)  # 2 failures: 6 successes fill the group
  assert many_wins[rl.select_rollouts(many_wins, 8)].tolist().count(0.0) == 2


@pytest.mark.parametrize("alternate", [False, True])
def test_buffer_matches_the_python_model_and_never_emits_a_collapsed_group(alternate):
  rng = np.random.default_rng(3)
  g, b, n, t, devices = 4, 3, 10, 2, 2
  buf = rl.RolloutBuffer(g, b, t, num_devices=devices, alternate_devices=alternate)
  model = PythonBuffer(g, b, devices, alternate)
  emitted, shapes = 0, set()
  for step in range(40):
    prompts = rng.integers(0, 50, 4)
    dev = (np.full(4, buf.next_device) if alternate else rng.integers(0, devices, 4))
    rewards = (rng.random((4, n)) < rng.random((4, 1)) ** 2).astype(np.float32)
    tokens = rng.integers(0, 5, (4, n, t))
    logp = rng.normal(size=(4, n, t))
    buf.add(prompts, dev, tokens, logp, np.ones((4, n, t)), rewards)
    model.add(prompts, dev, rewards)
    assert buf.ready() == model.ready()
    while buf.ready():
      batch, expect = buf.pop(), model.pop()
      emitted += 1
      assert batch["prompts"].reshape(b, g)[:, 0].tolist() == [p for p, _, _ in expect]
      assert batch["devices"].tolist() == [d for _, d, _ in expect]
      assert not batch["collapsed"].any()
      assert np.all(np.ptp(batch["rewards"].reshape(b, g), 1) > 0)
      adv = batch["advantages"].reshape(b, g)
      np.testing.assert_allclose(adv.mean(1), 0, atol=1e-5)
      shapes.add(tuple((k, v.shape, v.dtype.str) for k, v in sorted(batch.items())))
  assert emitted >= 5 and len(shapes) == 1
  assert buf.rollouts_consumed == 40 * 4 * n and buf.updates == emitted
  assert buf.groups_seen == 160 and buf.groups_dropped == 160 - emitted * b - len(buf)
  if alternate:
    assert buf.batch_devices == [i % 2 for i in range(emitted)]


def test_plain_batcher_keeps_collapsed_groups_and_tokens_travel_unchanged():
  buf = rl.RolloutBuffer(2, 2, 3, select="all", filter_collapsed=False)
  tokens = np.arange(2 * 2 * 3).reshape(2, 2, 3)
  logp = -np.arange(12.0).reshape(2, 2, 3)
  buf.add(np.array([5, 6]), np.zeros(2, int), tokens, logp, np.ones((2, 2, 3)), np.zeros((2, 2)))
  batch = buf.pop()
  np.testing.assert_array_equal(batch["tokens"], tokens.reshape(4, 3))
  np.testing.assert_array_equal(batch["logp"], logp.reshape(4, 3))
  assert batch["collapsed"].tolist() == [True, True] and np.all(batch["advantages"] == 0)
  with pytest.raises(ValueError, match="ready"):
    buf.pop()


def test_capacity_evicts_the_oldest():
  buf = rl.RolloutBuffer(2, 1, 1, capacity=2)
  for p in range(4):
    buf.add(np.array([p]), np.zeros(1, int), np.zeros((1, 2, 1)), np.zeros((1, 2, 1)), np.ones((1, 2, 1)),
            np.array([[0.0, 1.0]]))
  assert len(buf) == 2 and buf.groups_evicted == 2
  assert buf.pop()["prompts"].tolist() == [2, 2]
