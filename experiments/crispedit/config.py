"""Config and presets of the CrispEdit experiment (arXiv 2602.15823).

The MLP protocol and the LM study are our CPU-scale protocol, see experiments/crispedit/README.md.

Presets:
  smoke: the tiny CI version of the MLP protocol (one seed) and a tiny fact-editing LM (update-in-subspace
    check only); the test suite's run.
  small: the MLP protocol on 3 seeds and the 2-layer transformer LM fact-editing study
    (synthetic facts mixed with standard-library text) on 3 edit sets, plus sequential editing
    of 100 facts in batches of 32; the `jaxpapers reproduce` run.
  paper: the same studies at a larger scale for an accelerator (the paper's own setting,
    Llama-3-8B with 3,000 ZsRE edits, is out of reach of this repository's data policy).
"""

from __future__ import annotations

import dataclasses

from jaxpapers.core.config import MeshConfig, TrainConfig, check, check_choice

PROJECT_MODES = ("gradient", "update", "both")


@dataclasses.dataclass(frozen=True)
class EditConfig:
  """The editors' shared settings (energy rule, projection and loop of the authors' code).

  `project` and `label_mode` are those of the "crispedit" editor (and the A-only baseline's
  projection); they default to the authors' configuration. The studies also run ours
  ("crispedit_ours": gradient and update projected, sampled labels) side by side.

  Attributes:
    energy: fraction of each layer's curvature trace removed (CrispEdit and the A-only baseline).
    project: where the projection acts relative to Adam: gradient (the authors' ProjectedAdam),
      update or both (ours).
    label_mode: labels of the K-FAC collection: empirical (the authors') or sampled (ours, the
      Fisher).
    lr: Adam step size of every editor.
    max_steps: most optimizer steps of an edit (of each batch in sequential editing).
    target_loss: an edit stops once its loss is below this; a sequential batch already below it
      is skipped.
    batch_size: edits per batch of sequential editing (the authors' 32).
  """

  energy: float = 0.9
  project: str = "gradient"
  label_mode: str = "empirical"
  lr: float = 1e-3
  max_steps: int = 500
  target_loss: float = 1e-2
  batch_size: int = 32

  def __post_init__(self):
    check(0 <= self.energy <= 1, "edit.energy", self.energy, "in [0, 1]")
    check_choice("edit.project", self.project, PROJECT_MODES)
    check_choice("edit.label_mode", self.label_mode, ("sampled", "empirical"))
    check(0 < self.lr <= 1, "edit.lr", self.lr, "in (0, 1]")
    check(self.max_steps >= 1, "edit.max_steps", self.max_steps, ">= 1")
    check(self.target_loss > 0, "edit.target_loss", self.target_loss, "> 0")
    check(self.batch_size >= 1, "edit.batch_size", self.batch_size, ">= 1")


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  """The MLP protocol: a Gaussian-mixture classifier, K edits of its second layer.

  Attributes:
    dim, hidden, classes: MLP dim -> tanh(hidden) -> tanh(hidden) -> classes.
    mean_std: class means ~ N(0, mean_std² I); inputs x = μ_y + N(0, I).
    n_train, n_test: examples.
    batch_size, lr: Adam training of the base model.
    edits: number K of relabelled fresh points.
    gen_copies, gen_noise: noisy copies of each edit point (generalization set).
    factor_samples: training inputs of the K-FAC factors.
    num_seeds: `reproduce` runs the protocol on seeds train.seed, train.seed + 1, ...: one base
      model, data set and edit set per seed.
    train: the base model's training loop (`jaxpapers train crispedit task=mlp` trains seed
      train.seed).
  """

  dim: int = 64
  hidden: int = 128
  classes: int = 10
  mean_std: float = 0.3
  n_train: int = 50_000
  n_test: int = 5_000
  batch_size: int = 256
  lr: float = 1e-3
  edits: int = 20
  gen_copies: int = 10
  gen_noise: float = 0.3
  factor_samples: int = 8_000
  num_seeds: int = 3
  train: TrainConfig = TrainConfig(steps=4_000, eval_every=1_000, log_every=200, checkpoint_every=1_000,
                                   steps_per_dispatch=200)

  def __post_init__(self):
    for name in ("dim", "hidden", "n_train", "n_test", "batch_size", "edits", "gen_copies",
                 "factor_samples", "num_seeds"):
      check(getattr(self, name) >= 1, f"mlp.{name}", getattr(self, name), ">= 1")
    check(self.classes >= 2, "mlp.classes", self.classes, ">= 2")
    check(self.mean_std > 0, "mlp.mean_std", self.mean_std, "> 0")

  @property
  def seeds(self) -> tuple[int, ...]:
    """The seeds of `reproduce`'s base models."""
    return tuple(self.train.seed + i for i in range(self.num_seeds))


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """The tiny transformer LM fact-editing study.

  Facts `(subject, relation) -> object` are written with `templates` byte-level templates per
  relation (subjects and objects are single extra tokens after the 256 bytes); the LM is trained
  on fact sentences mixed with Python standard-library text.

  Attributes:
    subjects, relations, objects_per_relation: the fact table (subjects x relations facts).
    d_model, num_heads, num_layers, mlp_width: the transformer.
    seq_len: tokens per training row.
    batch_size, fact_fraction, lr, warmup_steps: pre-training (cosine decay over train.steps).
    edits: facts edited at once; locality_facts: unedited facts whose accuracy is tracked.
    sequential_edits: facts of the sequential-editing study (0: not run), edited in batches of
      `lm_edit.batch_size`; its locality facts are all the others.
    edit_layer: index of the block whose MLP down projection is edited.
    factor_batches: pre-training-mixture batches of the K-FAC factors.
    eval_text_batches: held-out text batches (files not used in training) for the text loss.
    train: the LM's pre-training loop (`jaxpapers train crispedit task=lm`; `reproduce` too).
  """

  subjects: int = 80
  relations: int = 3
  objects_per_relation: int = 16
  d_model: int = 64
  num_heads: int = 4
  num_layers: int = 2
  mlp_width: int = 256
  seq_len: int = 32
  batch_size: int = 64
  fact_fraction: float = 0.5
  lr: float = 3e-3
  warmup_steps: int = 100
  edits: int = 20
  locality_facts: int = 200
  sequential_edits: int = 100
  edit_layer: int = 1
  factor_batches: int = 16
  eval_text_batches: int = 16
  # checkpoint_every a multiple of steps_per_dispatch: every call runs 75 steps, one compiled
  # program (500 also compiled the 50- and 25-step chunks; the parameters are bit-identical)
  train: TrainConfig = TrainConfig(steps=1_500, eval_every=375, log_every=75, checkpoint_every=750,
                                   steps_per_dispatch=75)

  def __post_init__(self):
    for name in ("subjects", "relations", "objects_per_relation", "d_model", "num_heads",
                 "num_layers", "mlp_width", "batch_size", "edits", "factor_batches",
                 "eval_text_batches"):
      check(getattr(self, name) >= 1, f"lm.{name}", getattr(self, name), ">= 1")
    check(self.objects_per_relation >= 2, "lm.objects_per_relation", self.objects_per_relation, ">= 2")
    check(self.relations <= 3, "lm.relations", self.relations, "<= 3 (templates are written for 3)")
    check(self.seq_len >= 32, "lm.seq_len", self.seq_len, ">= 32 (the longest fact sentence)")
    check(self.d_model % self.num_heads == 0, "lm.d_model", self.d_model, "a multiple of lm.num_heads")
    check(0 < self.fact_fraction < 1, "lm.fact_fraction", self.fact_fraction, "in (0, 1)")
    check(0 <= self.edit_layer < self.num_layers, "lm.edit_layer", self.edit_layer,
          "in [0, lm.num_layers)")
    check(self.edits + self.locality_facts <= self.subjects * self.relations, "lm.locality_facts",
          self.locality_facts, "<= subjects x relations - edits")
    check(0 <= self.sequential_edits < self.subjects * self.relations, "lm.sequential_edits",
          self.sequential_edits, "in [0, subjects x relations)")


@dataclasses.dataclass(frozen=True)
class CrispEditConfig:
  """The CrispEdit experiment.

  Attributes:
    task: what `jaxpapers train crispedit` trains: the "mlp" or the "lm" base model.
    mlp, lm, edit: the two studies and the editors.
    lm_edit: editor settings of the LM study (τ = 0.99 as in the authors' Llama-3-8B config; see
      the calibration in README.md).
    lm_study_seeds: edit sets of the LM study (edited facts, new objects, factor batches and
      sampled labels), all on the one base model; the LM claims aggregate over them.
    run_lm: whether reproduce runs the LM study.
    mesh: devices.

  The one training stage trains `mlp.train` or `lm.train`, as `task` says.
  """

  task: str = "mlp"
  mlp: MLPConfig = MLPConfig()
  lm: LMConfig = LMConfig()
  edit: EditConfig = EditConfig()
  lm_edit: EditConfig = EditConfig(energy=0.99)
  lm_study_seeds: tuple[int, ...] = (0, 1, 2)
  run_lm: bool = True
  mesh: MeshConfig = MeshConfig()

  def __post_init__(self):
    check_choice("task", self.task, ("mlp", "lm"))
    check(len(self.lm_study_seeds) >= 1, "lm_study_seeds", self.lm_study_seeds, "at least one seed")


SMOKE = CrispEditConfig(
    mlp=MLPConfig(dim=32, hidden=64, n_train=20_000, n_test=5_000, edits=10,
                  factor_samples=4_000, num_seeds=1,
                  train=TrainConfig(steps=1_500, eval_every=375, log_every=75, checkpoint_every=500,
                                    steps_per_dispatch=75)),
    lm=LMConfig(subjects=12, relations=2, objects_per_relation=4, d_model=32, num_heads=2,
                mlp_width=64, batch_size=16, edits=4, locality_facts=8, sequential_edits=0,
                factor_batches=2, eval_text_batches=2,
                train=TrainConfig(steps=40, eval_every=10, log_every=2, checkpoint_every=20)),
    lm_edit=EditConfig(max_steps=20),
    lm_study_seeds=(0,))
# LM: a 2,048-wide MLP and block 0's down projection, the authors' early stop (README, calibration 3).
SMALL = CrispEditConfig(lm=LMConfig(mlp_width=2_048, edit_layer=0))
PAPER = CrispEditConfig(
    mlp=MLPConfig(dim=256, hidden=1024, n_train=500_000, n_test=20_000, edits=200,
                  factor_samples=100_000, num_seeds=3,
                  train=TrainConfig(steps=20_000, eval_every=5_000, log_every=1_000,
                                    checkpoint_every=2_000)),
    lm=LMConfig(subjects=2_000, relations=3, objects_per_relation=64, d_model=512, num_heads=8,
                num_layers=8, mlp_width=2048, seq_len=64, batch_size=256,
                edits=1_000, locality_facts=2_000, sequential_edits=3_000, edit_layer=5,
                factor_batches=200,
                eval_text_batches=64,
                train=TrainConfig(steps=50_000, eval_every=12_500, log_every=2_500,
                                  checkpoint_every=5_000)))

PRESETS = {"smoke": SMOKE, "small": SMALL, "paper": PAPER}
