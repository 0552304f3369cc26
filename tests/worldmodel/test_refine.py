"""predict_then_refine: the loop's calls, an exact simulator look-ahead, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpapers.envs.toy_rts import BUILD_DEPOT, TRAIN_WORKER, RTSState, ToyRTS
from jaxpapers.worldmodel.refine import predict_then_refine

ENV = ToyRTS()


def test_calls_in_order_on_plain_python_callables():
  log = []
  policy = lambda s: log.append(("policy", s)) or s + 1  # noqa: E731
  wm = lambda s, a: log.append(("wm", s, a)) or 10 * s + a  # noqa: E731
  refine = lambda s, a, p: log.append(("refine", s, a, p)) or (a if p < 1000 else -a)  # noqa: E731
  out = predict_then_refine(policy, wm, refine, horizon=3)(2)
  # policy(2)=3; wm(2,3)=23; policy(23)=24; wm(23,24)=254; policy(254)=255; wm(254,255)=2795
  assert log == [("policy", 2), ("wm", 2, 3), ("policy", 23), ("wm", 23, 24), ("policy", 254),
                 ("wm", 254, 255), ("refine", 2, 3, 2795)]
  assert (out.action, out.proposed, out.prediction) == (-3, 3, 2795)
  assert predict_then_refine(policy, wm, refine)(2).prediction == 23  # horizon 1: one call
  with pytest.raises(ValueError, match="horizon"):
    predict_then_refine(policy, wm, refine, horizon=0)


def test_true_simulator_prediction_and_refine_rule_under_vmap():
  def refine(state, proposed, pred):
    hit = (pred.supply_used >= pred.supply_cap) & ENV.can_build(state)
    return jnp.where(hit, BUILD_DEPOT, proposed)

  refined = predict_then_refine(ENV.base_policy, ENV.step, refine, horizon=5)
  states = RTSState(*(jnp.asarray(v, jnp.int32) for v in
                      ([500, 500, 50, 500], [12, 12, 12, 12], [13, 10, 13, 14], [15, 23, 15, 15],
                       [0, 0, 0, 3], [0, 0, 0, 0])))
  out = jax.jit(jax.vmap(refined))(states)
  # the predictions equal five true ticks: the proposed action, then the base policy
  for i in range(4):
    s = jax.tree.map(lambda x, i=i: x[i], states)
    p = ENV.step(s, ENV.base_policy(s))
    for _ in range(4):
      p = ENV.step(p, ENV.base_policy(p))
    assert [int(x) for x in p] == [int(x[i]) for x in out.prediction]
  np.testing.assert_array_equal(out.proposed, [TRAIN_WORKER] * 4)
  # 13/15 reaches the cap within 5 ticks (depot now); 10/23 does not; 50 minerals cannot pay;
  # a depot already building cannot be doubled
  np.testing.assert_array_equal(out.action, [BUILD_DEPOT, TRAIN_WORKER, TRAIN_WORKER, TRAIN_WORKER])
