"""Reproduction of StarWM ("World Models for Policy Refinement in StarCraft II",
arXiv 2602.14857) on the toy RTS economy of the spec (agents_and_evals.md section 6).

Claims (small preset; experiments/starwm/README.md), each a mean over `seeds` world models and
their evaluation episodes:
  * C1 (the online result: lower supply block rate): refining the reactive base policy with the learned
    world model (`jaxpapers.worldmodel.predict_then_refine`) at most halves its supply-block
    rate and ends with >= 5 more workers;
  * C2: the block rate does not increase as world-model quality improves (lower minerals SMAPE,
    the offline Economy metric), over the same run's snapshots;
  * C3: refining with the true simulator blocks no more than with the learned world model;
  * the spec's CI list (ToyRTS transitions, `smape`, `unit_set_wasserstein`, the text round trip)
    on every preset, and in the smoke preset a 300-step world model refining 100-tick episodes
    without more blocks than the base policy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxpapers.core import experiment as experiment_lib
from jaxpapers.core import report
from jaxpapers.envs import toy_rts
from jaxpapers.envs.toy_rts import BUILD_DEPOT, TRAIN_WORKER, WAIT, RTSState, ToyRTS
from jaxpapers.evals import rts_metrics

from . import model
from .config import PRESETS, StarWMConfig

PRECHECK = {"base_block": 0.035, "learned_block": 0.0, "true_block": 0.0, "base_workers": 63,
            "learned_workers": 72, "undertrained_block": 0.020}


# ---------------------------------------------------------------- the CI checks


def _state(*v) -> RTSState:
  return RTSState(*(jnp.asarray(x, jnp.int32) for x in v))


def transition_mismatches(env: ToyRTS = model.ENV) -> dict[str, int]:
  """Hand-computed ToyRTS transitions (costs, timers, cap): fields that differ, per case."""
  step = jax.jit(env.step)  # one compiled step for every case (eager ops compile one by one)

  def run(state, actions):
    for a in actions:
      state = step(state, jnp.int32(a))
    return np.array([int(x) for x in state])
  start = env.reset()  # 50 minerals, 12 workers, 12/15
  cases = {
      # train: pay 50, +1 supply now; income 60 per tick; the worker joins after 3 ticks
      "train_worker": (run(start, [TRAIN_WORKER, WAIT, WAIT]), [180, 13, 13, 15, 0, 0]),
      "train_timer": (run(start, [TRAIN_WORKER, TRAIN_WORKER]), [120, 12, 13, 15, 0, 1]),
      # depot: pay 100; +8 cap after 6 ticks, not after 5
      "depot_5_ticks": (run(_state(100, 12, 12, 15, 0, 0), [BUILD_DEPOT] + [WAIT] * 4),
                        [300, 12, 12, 15, 1, 0]),
      "depot_6_ticks": (run(_state(100, 12, 12, 15, 0, 0), [BUILD_DEPOT] + [WAIT] * 5),
                        [360, 12, 12, 23, 0, 0]),
      "one_depot_at_a_time": (run(_state(300, 12, 12, 15, 0, 0), [BUILD_DEPOT, BUILD_DEPOT]),
                              [320, 12, 12, 15, 4, 0]),
      # no training at the cap or without the minerals; no depot without 100
      "cap_blocks_training": (run(_state(500, 10, 15, 15, 0, 0), [TRAIN_WORKER]),
                              [550, 10, 15, 15, 0, 0]),
      "worker_cost": (run(_state(49, 10, 10, 15, 0, 0), [TRAIN_WORKER]), [99, 10, 10, 15, 0, 0]),
      "depot_cost": (run(_state(99, 10, 10, 15, 0, 0), [BUILD_DEPOT]), [149, 10, 10, 15, 0, 0]),
  }
  return {k: int(np.sum(got != np.array(want))) for k, (got, want) in cases.items()}


def smape_errors() -> dict[str, float]:
  """|smape - hand value| on its edge cases (0/0, one zero, symmetry, a plain case)."""
  s = lambda a, b: float(rts_metrics.smape(np.asarray(a, float), np.asarray(b, float)))  # noqa: E731
  return {"zero_over_zero": abs(s([0.0], [0.0]) - 0.0),
          "one_zero": abs(s([0.0], [5.0]) - 2.0),
          "plain": abs(s([1.0, 10.0], [3.0, 10.0]) - 0.5),  # (2 / 2 + 0) / 2
          "symmetry": abs(s([1.0, 7.0, 0.0], [2.0, 3.0, 0.0]) - s([2.0, 3.0, 0.0], [1.0, 7.0, 0.0]))}


def wasserstein_errors() -> dict[str, float]:
  """|unit_set_wasserstein - exact value|: identical sets, a rigid shift, symmetry, unmatched."""
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 64, (12, 2))
  y = rng.uniform(0, 64, (12, 2))
  w = rts_metrics.unit_set_wasserstein
  return {"identical": abs(w(x, x[::-1])),
          "rigid_shift": abs(w(x, x + np.array([3.0, 4.0])) - 5.0),
          "symmetry": abs(w(x, y) - w(y, x)),
          # {0}, {1, 10} on a line with cost 20 per unmatched unit: match 0-1, leave 10: (1 + 20) / 2
          "unmatched": abs(w([[0.0]], [[1.0], [10.0]], unmatched_cost=20.0) - 10.5)}


def round_trip_failures(states: RTSState) -> tuple[int, int]:
  """(states whose text does not parse back to them, states checked), over flat states."""
  flat = [np.asarray(x).reshape(-1) for x in states]
  bad = 0
  for i in range(len(flat[0])):
    s = RTSState(*(int(f[i]) for f in flat))
    back = toy_rts.from_text(toy_rts.to_text(s))
    bad += any(int(a) != int(b) for a, b in zip(s, back))
  return bad, len(flat[0])


def ci_claims(ci: dict[str, dict]) -> list[report.Claim]:
  """The CI list as claims, from `{"transitions": ..., "smape": ..., "wasserstein": ...}`."""
  t, sm, ws = ci["transitions"], ci["smape"], ci["wasserstein"]
  rng = np.random.default_rng(1)
  random_states = RTSState(*(jnp.asarray(rng.integers(lo, hi, 200), jnp.int32) for lo, hi in
                             ((0, 20000), (0, 200), (0, 200), (0, 200), (0, 7), (0, 4))))
  bad, n = round_trip_failures(random_states)
  return [
      report.at_most("toy_rts_transitions", f"ToyRTS: fields differing from {len(t)} hand-computed "
                     "transitions (costs 50/100, timers 3/6 ticks, +8 cap, queue limits, cap block)",
                     sum(t.values()), 0),
      report.at_most("smape_edge_cases", "smape: max |error| on 0/0 := 0, one zero (= 2), a plain "
                     "case (0.5) and symmetry", max(sm.values()), 1e-6),
      report.at_most("unit_set_wasserstein_cases", "unit_set_wasserstein: max |error| on identical "
                     "sets (0), a rigid (3, 4) shift (5), symmetry and an unmatched unit (10.5)",
                     max(ws.values()), 1e-6),
      report.at_most("text_round_trip", f"to_text -> from_text: states not recovered out of {n} "
                     "random states", bad, 0),
  ]


# ---------------------------------------------------------------- world models and episodes


def _train(config: StarWMConfig, steps: int, out_dir: Path, progress):
  cfg = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=steps),
                            quality_steps=tuple(s for s in config.quality_steps if s < steps))
  return experiment_lib.run_stage(EXPERIMENT, cfg, out_dir / f"wm_{steps}", progress,
                                  label=f"world models ({config.seeds} seeds), {steps} steps")


def _mean(stats: model.EpisodeStats, axes) -> dict[str, float]:
  return {k: float(np.mean(np.asarray(v), axis=axes)) for k, v in stats._asdict().items()}


def _per_seed(stats: model.EpisodeStats) -> dict[str, list[float]]:
  return {k: np.asarray(v, float).mean(-1).round(5).tolist() for k, v in stats._asdict().items()}


def _plot(path: Path, variants: dict[str, dict], ladder: list[dict]) -> Path:
  fig, (a, b) = report.subplots(1, 2, figsize=(11, 4))
  names = list(variants)
  a.bar(names, [variants[n]["block_rate"] for n in names], color="tab:red")
  a.set(ylabel="supply-block rate", title="mean over seeds and episodes")
  a.tick_params(axis="x", labelrotation=30, labelsize=7)
  a2 = a.twinx()
  a2.plot(names, [variants[n]["workers"] for n in names], "ko-")
  a2.set_ylabel("workers at the end (black)")
  b.plot([r["minerals_smape"] for r in ladder], [r["block_rate"] for r in ladder], "o-")
  for r in ladder:
    b.annotate(f"{r['steps']} steps", (r["minerals_smape"], r["block_rate"]), fontsize=8)
  b.set(xscale="log", xlabel="minerals SMAPE (held out)", ylabel="refine block rate",
        title="world-model quality ladder")
  return report.save_figure(fig, path)


def reproduce(config: StarWMConfig, preset: str, out_dir: Path, progress):
  """CI checks, world-model training (one ensemble run per ladder step), refine episodes."""
  out_dir = Path(out_dir)
  ci = {"transitions": transition_mismatches(), "smape": smape_errors(),
        "wasserstein": wasserstein_errors()}
  claims = ci_claims(ci)
  levels = tuple(config.quality_steps) + (config.train.steps,)
  runs = [_train(config, steps, out_dir, progress) for steps in levels]
  params = jax.tree.map(lambda *xs: jnp.stack(xs), *[model.member_params(r.state) for r in runs])
  train, held = model.transitions(config)
  stats = model.stats_of(train)
  pred = np.asarray(model.predict_heldout(params, stats, held.states, held.actions))  # [L, S, N, 6]
  supply = [toy_rts.FIELDS.index("supply_used"), toy_rts.FIELDS.index("supply_cap")]
  true = held.targets.astype(np.float64)
  m = toy_rts.FIELDS.index("minerals")
  ladder = []
  for i, steps in enumerate(levels):
    ladder.append({"steps": steps,
                   "minerals_smape": float(rts_metrics.smape(pred[i, ..., m], true[..., m])),
                   "supply_smape": float(rts_metrics.smape(pred[i][..., supply], true[..., supply])),
                   "supply_rmse": float(np.sqrt(np.mean((pred[i][..., supply] - true[..., supply]) ** 2)))})
  persistence = float(rts_metrics.smape(held.states[..., m], true[..., m]))

  start = model.starts(config)
  base, true_refine = model.evaluate_simulators(start, ticks=config.episode_ticks,
                                                horizon=config.horizon, margin=config.margin)
  learned = model.evaluate_learned(params, stats, start, ticks=config.episode_ticks,
                                   margin=config.margin)
  variants = {"base": _mean(base, None), "refine_true_sim": _mean(true_refine, None)}
  for i, steps in enumerate(levels):
    variants[f"refine_wm_{steps}"] = _mean(jax.tree.map(lambda x, i=i: x[i], learned), None)
    ladder[i]["block_rate"] = variants[f"refine_wm_{steps}"]["block_rate"]
    ladder[i]["workers"] = variants[f"refine_wm_{steps}"]["workers"]
  best = variants[f"refine_wm_{config.train.steps}"]
  bad, n = round_trip_failures(start)

  claims.append(report.less_than(
      "wm_beats_persistence", "trained world model: minerals SMAPE / SMAPE of predicting no change "
      "(held out)", ladder[-1]["minerals_smape"] / max(persistence, 1e-12), 1.0))
  if preset == "smoke":
    claims.append(report.at_most(
        "smoke_refine_not_more_blocks", f"{config.train.steps}-step world model, "
        f"{config.episode_ticks}-tick episodes: refine block rate - base block rate",
        best["block_rate"] - variants["base"]["block_rate"], 0.0))
  else:
    ratio = best["block_rate"] / max(variants["base"]["block_rate"], 1e-12)
    claims += [
        report.at_most("C1_block_rate_halved", "learned-WM refine block rate / base block rate",
                       ratio, 0.5, paper_value=f"pre-check {PRECHECK['learned_block']:.3f} / "
                       f"{PRECHECK['base_block']:.3f}; paper: lower supply block rate"),
        report.at_least("C1_more_workers", "learned-WM refine workers - base workers at T = "
                        f"{config.episode_ticks}", best["workers"] - variants["base"]["workers"], 5.0,
                        paper_value=f"pre-check {PRECHECK['learned_workers']} - {PRECHECK['base_workers']}"),
    ]
    if len(levels) > 1:
      by_quality = sorted(ladder, key=lambda r: -r["minerals_smape"])  # worst world model first
      increase = max(b["block_rate"] - a["block_rate"] for a, b in zip(by_quality, by_quality[1:]))
      claims.append(report.at_most(
          "C2_quality_monotone", "largest block-rate increase between world models of decreasing "
          "minerals SMAPE (" + ", ".join(f"{r['steps']} steps: {r['minerals_smape']:.2e}"
                                         for r in by_quality) + ")", increase, 0.0,
          paper_value=f"pre-check 200 steps {PRECHECK['undertrained_block']}, 3000 steps 0.0"))
    claims.append(report.at_most(
        "C3_true_sim_le_learned", "true-simulator refine block rate - learned-WM refine block rate",
        variants["refine_true_sim"]["block_rate"] - best["block_rate"], 0.0,
        paper_value="pre-check 0.000 - 0.000"))
  claims.append(report.at_most("text_round_trip_starts", f"to_text -> from_text: evaluation starts "
                               f"not recovered out of {n}", bad, 0))

  figures = {"ladder": ladder, "persistence_minerals_smape": persistence, "variants": variants,
             "per_seed": {"base": _per_seed(base), "refine_true_sim": _per_seed(true_refine),
                          **{f"refine_wm_{s}": _per_seed(jax.tree.map(lambda x, i=i: x[i], learned))
                             for i, s in enumerate(levels)}},
             "final_heldout_mse": [r.final_metrics.get("heldout_mse") for r in runs],
             "ci": ci,
             "example_observation": toy_rts.to_text(jax.tree.map(lambda x: x[0, 0], start))}
  (out_dir / "figures.json").write_text(json.dumps(figures, indent=2, default=float) + "\n")
  return claims, [_plot(out_dir / "refine.png", variants, ladder)]


EXPERIMENT = experiment_lib.Experiment(
    name=experiment_lib.folder_name(__name__),
    paper="2602.14857",
    title="World Models for Policy Refinement in StarCraft II (StarWM), on a toy RTS economy",
    presets=PRESETS,
    reproduce=reproduce,
    stages=(experiment_lib.Stage("train", model.make_task),),
    status="in progress",
)
