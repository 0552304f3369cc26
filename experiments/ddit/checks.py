"""The CI checks of the DDiT experiment as claims (our tiny version of the protocol).

Third difference on quadratic trajectories, the scheduler on synthetic histories, the patchify
round trip, the PI-resize identity, the base path against the teacher bit for bit, the FLOP
ratio of an all-coarse schedule, and the distillation loss before and after training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core import report
from jaxpapers.diffusion import ddit
from jaxpapers.nn import dit
from jaxpapers.nn import multipatch_dit as mp


def third_diff_claim() -> report.Claim:
  rng = np.random.default_rng(0)
  a, b, c = (rng.standard_normal((2, 8, 8, 1)) for _ in range(3))
  z = [a + b * k + c * k * k for k in range(4)]
  quadratic = float(np.max(np.abs(ddit.third_diff(z[3], z[2], z[1], z[0]))))
  w = [rng.standard_normal((2, 8, 8, 1)) for _ in range(4)]
  formula = float(np.max(np.abs(ddit.third_diff(*w) - (w[0] - 3 * w[1] + 3 * w[2] - w[3]))))
  return report.at_most("third_diff", "Delta^3 z = z_{t-1} - 3 z_t + 3 z_{t+1} - z_{t+2}: max "
                        "error against the formula and on latents quadratic in the step index",
                        max(quadratic, formula), 1e-5)


def scheduler_claim(tau: float = 1e-3) -> report.Claim:
  """Four synthetic histories: smooth -> largest size, noisy -> base, 30 % noisy patches ->
  coarse at rho 0.4 and base at rho 0.8."""
  rng = np.random.default_rng(1)
  shape = (1, 32, 32, 1)
  k = np.arange(4)[::-1].reshape(4, 1, 1, 1, 1)  # newest first
  smooth = 0.1 + 0.2 * k + 0.05 * k ** 2 + np.zeros((4, *shape))
  noisy = smooth + rng.normal(0, 100 * tau, (4, *shape))
  patches = np.zeros((8, 8))
  patches.flat[rng.choice(64, 19, replace=False)] = 1  # 19 of 64 4 x 4 patches (30 %)
  part = smooth + np.kron(patches, np.ones((4, 4)))[None, None, :, :, None] * (noisy - smooth)
  got = [int(ddit.ddit_schedule(jnp.asarray(smooth), tau, 0.4, (4, 8), 2)[0]) == 8,
         int(ddit.ddit_schedule(jnp.asarray(noisy), tau, 0.4, (4, 8), 2)[0]) == 2,
         int(ddit.ddit_schedule(jnp.asarray(part), tau, 0.4, (4,), 2)[0]) == 4,
         int(ddit.ddit_schedule(jnp.asarray(part), tau, 0.8, (4,), 2)[0]) == 2]
  return report.at_least("scheduler_synthetic", "scheduler cases right of 4 (smooth -> 4p, "
                         "noise -> p, 30 % noisy patches -> 2p at rho 0.4 and p at rho 0.8)",
                         sum(got), 4)


def round_trip_claim() -> report.Claim:
  x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 16, 16, 1)), jnp.float32)
  err = max(float(jnp.max(jnp.abs(dit.unpatchify(dit.patchify(x, (p, p)), (16, 16), (p, p), 1)
                                  - x))) for p in (2, 4))
  return report.at_most("patchify_round_trip", "patchify / un-patchify round trip, max error "
                        "(p = 2 and 4)", err, 0.0)


def pi_resize_claim() -> report.Claim:
  rng = np.random.default_rng(3)
  w = rng.standard_normal((4, 6))
  up = mp.upsample_matrix(2, 4, 1)
  x = rng.standard_normal((9, 4))
  identity = np.max(np.abs((x @ up.T) @ (mp.pi_resize_matrix(2, 4, 1) @ w) - x @ w))
  x_coarse = rng.standard_normal((9, 16))
  down = np.linalg.lstsq(up, x_coarse.T, rcond=None)[0].T
  least_squares = np.max(np.abs(x_coarse @ (mp.pi_resize_matrix(2, 4, 1) @ w) - down @ w))
  return report.at_most("pi_resize", "PI-resize: |<Bx, W_new> - <x, W>| and |coarse embed - "
                        "base embed of B^+ x_coarse|, max", max(identity, least_squares), 1e-5)


def flop_claim(config: mp.MultiPatchConfig, steps: int) -> report.Claim:
  coarse = config.sizes[1]
  ratio = ddit.flop_ratio(np.full((steps, 3), coarse), config)
  expected = ddit.forward_flops(config, coarse) / ddit.forward_flops(config, config.base)
  return report.at_most("flop_all_coarse", f"FLOP ratio of an all-coarse schedule minus "
                        f"F({config.num_tokens(coarse)}) / F({config.num_tokens(config.base)}) "
                        f"({expected:.4f}), absolute", abs(ratio - expected), 1e-12)


def base_path_claims(graphdef, initial_state, final_state, teacher_state, teacher_config,
                     x, t, labels) -> list[report.Claim]:
  """The base path at init and after distillation against the teacher, max |difference|."""
  from flax import nnx  # pylint: disable=g-import-not-at-top
  teacher_def = nnx.graphdef(nnx.eval_shape(lambda: dit.DiT(teacher_config, rngs=nnx.Rngs(0))))
  teacher = jax.jit(lambda s: nnx.merge(teacher_def, s)(x, t, labels))(teacher_state)
  base = jax.jit(lambda s: nnx.merge(graphdef, s)(x, t, labels))
  diffs = [float(jnp.max(jnp.abs(base(s) - teacher))) for s in (initial_state, final_state)]
  return [report.at_most("base_path_at_init", "base patch path of the multi-patch DiT at init "
                         "vs the teacher, max |difference| (bit for bit)", diffs[0], 0.0),
          report.at_most("base_path_after_distillation", "base patch path after distillation vs "
                         "the teacher, max |difference| (LoRA off at the base size)", diffs[1], 0.0)]
