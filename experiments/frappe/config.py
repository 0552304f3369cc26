"""Config and presets of the FRAPPE experiment (arXiv 2602.17259), on the `push2d` task.

Presets:
  smoke: the CI version (d 8, depth 2, M 3, n 2, T_a 4; a few steps per stage; 64 episodes per
    setting): MiPA's unit checks as claims, every figure reported, none gated.
  small: the CPU reproduction: d 32, depth 4, 4 heads, n 4, T_a 8; teacher S 300 steps,
    pretrain 600, fine-tunes 600 (R0, R1, R3) or 450 + 150 (R2, R4); 1,000 episodes per setting.
  paper: the paper's schedule (15k mid + 5k post, batch 32) on a wider policy, for an accelerator.
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check
from jaxpapers.nn.rdt_policy import MiPAConfig, RDTConfig

PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Demonstrations and evaluation.

  Attributes:
    pretrain_demos: expert demos of the "pretraining" set (analogue of RDT's pre-training).
    task_demos: expert demos of the task set (analogue of 50 trajectories per task).
    action_free_demos: expert rollouts rendered on the action-free textures, actions dropped.
    probe_demos: held-out in-distribution demos the future probe is scored on.
    horizon: h, env steps between a frame and its future frame (clipped at the episode end).
    textures: held-out OOD textures (ids 0..N-1); the action-free set uses ids N..2N-1.
    eval_episodes: closed-loop episodes per setting (ID, OOD), fixed seeds.
    seed: seed of every data set.
    quick_compile: compile the demo generator with XLA's cheap backend settings (smoke: about
      half its compile time; the demos may differ from the default build's in the last bits).
  """

  pretrain_demos: int = 300
  task_demos: int = 50
  action_free_demos: int = 200
  probe_demos: int = 20
  horizon: int = 8
  textures: int = 20
  eval_episodes: int = 1000
  seed: int = 0
  quick_compile: bool = False

  def __post_init__(self):
    for name in ("pretrain_demos", "task_demos", "action_free_demos", "probe_demos",
                 "textures", "eval_episodes"):
      check(getattr(self, name) >= 1, f"data.{name}", getattr(self, name), ">= 1")
    check(1 <= self.horizon < 40, "data.horizon", self.horizon, "in [1, 40)")


@dataclasses.dataclass(frozen=True)
class FrappeConfig:
  """A FRAPPE run: teacher S, pretraining, fine-tunes R0-R4, evaluation.

  Attributes:
    model: the toy RDT policy.
    mipa: the post-training experts.
    data: demonstrations and evaluation.
    batch_size: batch of every stage.
    lr: Adam learning rate of the policy stages.
    teacher_lr: Adam learning rate of the teacher S.
    align_weight: lambda_1 (paper: 0.05).
    balance_weight: lambda_2 (not given in the paper; 1e-3, the usual z-loss coefficient).
    action_free: mix the action-free textured rollouts 1:1 into post-training (run R4).
    ddim_steps: DDIM steps at inference (paper: 5).
    replan: env steps executed per policy call.
    with_r4: run R4 (action-free co-training).
    with_no_balance: run R2 without the balance loss and gate smoothing.
    checks: MiPA's unit checks as claims (smoke).
    study: train R0, R1, R3 (and R4, the no-balance run) beside R2 and measure the probe,
      closed-loop success, router health and cost; False (smoke): R2's stages and the checks.
    teacher: stage `teacher` (S regresses [T1 | T2 | T3]).
    pretrain: stage `pretrain` (L_action on the pretraining set).
    finetune: stage `finetune` (R0: L_action on the task set).
    mid: stage `mid` (full fine-tune, L_action + lambda_1 L_align(S)); R1 trains mid + post steps.
    post: stage `post` (MiPA on the frozen mid model); R3 trains mid + post steps of it from
      the pretrained model.
    mesh: devices.
    prng_impl: JAX's PRNG for the whole run (`jax.default_prng_impl`); smoke: "unsafe_rbg",
      XLA's RngBitGenerator, whose programs compile in about half the time of threefry's
      (every random init, the demos, the noise draws of each train step); another random
      stream, so the smoke figures are those of another draw.
  """

  model: RDTConfig = RDTConfig()
  mipa: MiPAConfig = MiPAConfig()
  data: DataConfig = DataConfig()
  batch_size: int = 32
  lr: float = 3e-4
  teacher_lr: float = 1e-3
  align_weight: float = 0.05
  balance_weight: float = 1e-3
  action_free: bool = False
  ddim_steps: int = 5
  replan: int = 8
  with_r4: bool = True
  with_no_balance: bool = True
  checks: bool = False
  study: bool = True
  teacher: TrainConfig = TrainConfig(steps=300, eval_every=0, log_every=50, checkpoint_every=0,
                                     steps_per_dispatch=50)
  pretrain: TrainConfig = TrainConfig(steps=600, eval_every=0, log_every=50, checkpoint_every=300,
                                      steps_per_dispatch=50)
  finetune: TrainConfig = TrainConfig(steps=600, eval_every=0, log_every=50, checkpoint_every=300,
                                      seed=1, steps_per_dispatch=50)
  mid: TrainConfig = TrainConfig(steps=450, eval_every=0, log_every=50, checkpoint_every=150,
                                 seed=1, steps_per_dispatch=50)
  post: TrainConfig = TrainConfig(steps=150, eval_every=0, log_every=50, checkpoint_every=150,
                                  seed=2, steps_per_dispatch=50)
  mesh: MeshConfig = MeshConfig(axis_types="auto")
  prng_impl: str = "threefry2x32"

  def __post_init__(self):
    check(self.prng_impl in PRNG_IMPLS, "prng_impl", self.prng_impl, f"one of {PRNG_IMPLS}")
    m = self.model
    check(m.image_size == 16 and m.channels == 3 and m.proprio_dim == 2 and m.action_dim == 2,
          "model.image_size", m.image_size, "16 with channels 3, proprio_dim 2, action_dim 2 "
          "(push2d)")
    check(m.target_dim == 3 * self.mipa.target_dim, "model.target_dim", m.target_dim,
          f"3 x mipa.target_dim = {3 * self.mipa.target_dim} (S regresses [T1 | T2 | T3])")
    check(self.mipa.experts == 3, "mipa.experts", self.mipa.experts, "3 (one per teacher T1-T3)")
    check(self.mipa.target_dim % 8 == 0, "mipa.target_dim", self.mipa.target_dim,
          "a multiple of 8 (T2's Fourier features: 4 coordinates x sin/cos x frequencies)")
    check(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
    check(0 < self.lr <= 1 and 0 < self.teacher_lr <= 1, "lr", self.lr,
          "in (0, 1] (and teacher_lr)")
    check(self.align_weight >= 0, "align_weight", self.align_weight, ">= 0")
    check(self.balance_weight >= 0, "balance_weight", self.balance_weight, ">= 0")
    check(1 <= self.ddim_steps <= m.diffusion_steps, "ddim_steps", self.ddim_steps,
          f"in [1, model.diffusion_steps={m.diffusion_steps}]")
    check(1 <= self.replan <= m.chunk and 40 % self.replan == 0, "replan", self.replan,
          f"in [1, model.chunk={m.chunk}] and dividing the 40-step episode")


def _train(steps: int, seed: int = 0, every: int = 50) -> TrainConfig:
  return TrainConfig(steps=steps, eval_every=0, log_every=max(1, min(every, steps)),
                     checkpoint_every=0, seed=seed, steps_per_dispatch=min(50, steps))


SMOKE = FrappeConfig(
    model=RDTConfig(width=8, depth=2, num_heads=2, prefix=2, chunk=4, target_dim=24,
                    projector_hidden=16, frequency_dim=8),
    mipa=MiPAConfig(lora_rank=2, target_dim=8),
    data=DataConfig(pretrain_demos=4, task_demos=4, action_free_demos=4, probe_demos=4,
                    eval_episodes=64, quick_compile=True),
    replan=4, with_no_balance=False, checks=True, study=False, prng_impl="unsafe_rbg",
    teacher=_train(10), pretrain=_train(10), finetune=_train(10, 1), mid=_train(10, 1, 10),
    post=_train(10, 2, 10))
SMALL = FrappeConfig()
PAPER = FrappeConfig(
    model=RDTConfig(width=256, depth=12, num_heads=8, prefix=16, chunk=8, target_dim=96),
    mipa=MiPAConfig(lora_rank=32),
    data=DataConfig(pretrain_demos=5000, task_demos=50, action_free_demos=2000,
                    eval_episodes=10_000),
    teacher=_train(3000), pretrain=_train(20_000), finetune=_train(20_000, 1),
    mid=_train(15_000, 1), post=_train(5000, 2))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
