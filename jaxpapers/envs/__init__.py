"""Small pure-functional environments, `jax.vmap`-able for batched closed-loop rollouts.

* `push2d`: planar box pushing with in-distribution and shifted renderings (FRAPPE, arXiv
  2602.17259).
* `pandora`: Calibrate-Then-Act's one-prize discounted box task, its exact DP oracle and the
  PopQA retrieval rule (arXiv 2602.16699).
* `coding_task`: Calibrate-Then-Act's coding task with selective testing, library version, and
  its exact DP oracle (arXiv 2602.16699).
"""

from jaxpapers.envs import push2d

# isort: split
# SeqBandit (MRPO, arXiv 2602.16855) and the synthetic non-verifiable alignment task with toy
# reference-guided / reference-free judges (RefEval, arXiv 2602.16802).
from jaxpapers.envs import alignment, seq_bandit
from jaxpapers.envs.alignment import AlignmentTask, JudgeParams, make_alignment_task
from jaxpapers.envs.seq_bandit import SeqBandit, make_seq_bandit

# isort: split
# Calibrate-Then-Act (arXiv 2602.16699): Pandora's box and the coding task with their DP oracles.
from jaxpapers.envs import coding_task, pandora

# isort: split
# ToyRTS (StarWM, arXiv 2602.14857): the few-line RTS economy and its structured text form.
from jaxpapers.envs import toy_rts
from jaxpapers.envs.toy_rts import RTSState, ToyRTS

# isort: split
# ToyUI (Computer-Using World Model, arXiv 2602.17365): widget flags with dependencies, a
# deterministic screen, goals and the logged expert click.
from jaxpapers.envs import toy_ui
from jaxpapers.envs.toy_ui import ToyUI
