"""Small pure-functional environments, `jax.vmap`-able for batched closed-loop rollouts.

* `push2d`: planar box pushing with in-distribution and shifted renderings (FRAPPE, arXiv
  2602.17259).
"""

from jaxpapers.envs import push2d
