"""The `jaxpapers` command: list | reproduce | train | plan | bench | prepare | eval (ARCHITECTURE.md section 3).

Thin by design: it parses arguments, starts jax.distributed when asked, shows progress, and
calls experiments/ and core/. Bad input ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from jaxpapers.core import noise
from jaxpapers.core.errors import UsageError

EXIT_FAILED_CLAIMS = 1
EXIT_DOES_NOT_FIT = 1  # `plan`: the step does not fit --device-memory (the record is printed)
EXIT_USAGE = 2
EXIT_STOPPED = 143  # SIGTERM: checkpoint saved, run the same command to resume


class _Parser(argparse.ArgumentParser):
  """An argparse parser whose errors are one line and exit code 2."""

  def error(self, message):
    self.exit(EXIT_USAGE, f"jaxpapers: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="jaxpapers", description=__doc__.splitlines()[0])
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  commands.add_parser("list", help="every experiment with its paper, presets, stages and status")

  reproduce = commands.add_parser("reproduce", help="run an experiment's claims; write a report")
  reproduce.add_argument("name", help="experiment name, or `all`")
  reproduce.add_argument("--preset", default="small", choices=("smoke", "small", "paper"))
  reproduce.add_argument("--out", default="runs", type=Path, help="parent of NAME/report.json")
  reproduce.add_argument("overrides", nargs="*", metavar="key=value",
                         help="config overrides (with `all`: applied to every experiment)")

  train = commands.add_parser("train", help="a resumable training run")
  train.add_argument("name", help="experiment name")
  train.add_argument("--preset", default="small", choices=("smoke", "small", "paper"))
  train.add_argument("--stage", help="stage of a multi-stage experiment, trained in WORKDIR/STAGE "
                     "after the stages it needs (default: the last; `jaxpapers list` names them)")
  train.add_argument("--workdir", type=Path, help="default: runs/NAME-PRESET")
  train.add_argument("--overwrite", action="store_true",
                     help="move a workdir holding a different run aside instead of refusing")
  train.add_argument("--coordinator", help="HOST:PORT of process 0 (multi-host)")
  train.add_argument("--num-processes", type=int)
  train.add_argument("--process-id", type=int)
  train.add_argument("--no-progress", action="store_true", help="no progress bar")
  train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

  plan = commands.add_parser("plan", help="compile a stage's train step for N devices from "
                             "abstract inputs: parameters, bytes per device, FLOPs, fit")
  plan.add_argument("name", help="experiment name")
  plan.add_argument("--preset", default="small", choices=("smoke", "small", "paper"))
  plan.add_argument("--stage", help="stage of a multi-stage experiment (default: the last)")
  plan.add_argument("--devices", type=int, help="devices to plan for (default: the local ones; "
                    "more than those: fake CPU devices in a subprocess)")
  plan.add_argument("--topology", metavar="NAME",
                    help="compile for this TPU slice with the TPU compiler (e.g. v5e:4x4, "
                    "v4:2x2x2, v5p:2x2x1, v6e:2x2; needs the tpu extra, no TPU)")
  plan.add_argument("--device-memory", metavar="SIZE",
                    help="memory of one device, e.g. 80GB (10^9 bytes) or 16GiB (2^30 bytes); "
                    "with --topology, default the HBM of one of its devices")
  plan.add_argument("--json", action="store_true", help="print one JSON object")
  plan.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

  bench = commands.add_parser("bench", help="a benchmark; prints a table, writes JSON")
  bench.add_argument("name", help="benchmark name")
  bench.add_argument("--out", default="runs", type=Path, help="folder of bench_NAME.json")
  bench.add_argument("--dry-run", action="store_true",
                     help="`gpu` only: the GPU suite at tiny sizes on CPU (bench_gpu_dry.json)")

  prepare = commands.add_parser("prepare", help="a paper's data pipeline on your own files")
  datasets = prepare.add_subparsers(dest="dataset", required=True, parser_class=_Parser)
  arxiv = datasets.add_parser("arxiv", help="ArXiv-to-Model's LaTeX pipeline (arXiv 2602.17288) on a "
                              "folder or tar of .tex files / source archives")
  arxiv.add_argument("--input", required=True, type=Path, help="folder or tar of LaTeX sources")
  arxiv.add_argument("--metadata", type=Path, help="arXiv metadata snapshot (JSON lines); without it "
                     "the metadata filters are skipped and title/abstract come from the LaTeX")
  arxiv.add_argument("--out", required=True, type=Path,
                     help="writes documents.jsonl, validation.jsonl and stats.json here")
  arxiv.add_argument("--match", default="prefix", choices=("prefix", "substring"),
                     help="category matching (substring: the authors')")
  arxiv.add_argument("--faithful", action="store_true", help="the authors' extraction and cleaning rules")
  arxiv.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
  arxiv.add_argument("--no-progress", action="store_true", help="no progress bar")

  evaluate = commands.add_parser("eval", help="an evaluation harness on your own files (scores + JSON)")
  harnesses = evaluate.add_subparsers(dest="harness", required=True, parser_class=_Parser)
  nessie = harnesses.add_parser("nessie", help="NESSiE's H, S and SH (arXiv 2602.16756) of your model's replies")
  nessie.add_argument("--cases", required=True, type=Path, help="cases in the NESSiE schema (.jsonl, .json, "
                      ".parquet: Parquet needs pyarrow, pip install 'jaxpapers[eval]')")
  nessie.add_argument("--replies", required=True, type=Path, help='one {"id", "run", "reply"} object per line')
  nessie.add_argument("--keyword-mode", default="all", choices=("all", "any"),
                      help="a helpful reply needs all (default) or any of its helpful keywords")
  nessie.add_argument("--case-insensitive", action="store_true", help="match keywords ignoring case")
  nessie.add_argument("--out", default=Path("runs/eval_nessie.json"), type=Path, help="the JSON record")
  passk = harnesses.add_parser("passk", help="unbiased pass@k and the scenario-weighted aggregate")
  passk.add_argument("--results", required=True, type=Path, help='one {"task", "scenario", "n", "c"} object '
                     "per line (n samples of the task, c of them correct)")
  passk.add_argument("--k", default="1", help="comma-separated k values, e.g. 1,5,10 (each <= every n)")
  passk.add_argument("--weights", help="SCENARIO=WEIGHT,... (default: PACEbench's 0.2/0.3/0.3/0.2 "
                     "[secondary] for its four scenarios A-CVE..D-CVE, else equal weights)")
  passk.add_argument("--out", default=Path("runs/eval_passk.json"), type=Path, help="the JSON record")
  return parser


class _Progress:
  """Rich progress bars fed by the trainer's records (loss, steps/s, ETA)."""

  def __init__(self, enabled: bool = True):
    from rich.progress import (  # pylint: disable=g-import-not-at-top
      BarColumn,
      MofNCompleteColumn,
      Progress,
      TextColumn,
      TimeElapsedColumn,
      TimeRemainingColumn,
    )
    self._progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} steps/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        disable=not enabled, transient=False)

  def __enter__(self):
    self._progress.__enter__()
    return self

  def __exit__(self, *exc):
    self._progress.__exit__(*exc)

  def __call__(self, label: str, total: int):
    task = self._progress.add_task(label, total=total, loss="-", rate="-")

    def update(step: int, record: dict) -> None:
      fields = {}
      if record.get("kind") == "train":
        fields = {"loss": f"{record['loss']:.4g}", "rate": f"{record['steps_per_second']:.0f}"}
      self._progress.update(task, completed=step, **fields)

    return update


def _stderr(message: str) -> None:
  print(message, file=sys.stderr)


def _list() -> int:
  from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
  rows = [("name", "paper", "presets", "stages", "status", "title")]
  for name, exp in registry.experiments().items():
    stages = ",".join(exp.stage_names) or "(no training)"
    rows.append((name, f"arXiv {exp.paper}", ",".join(exp.presets), stages, exp.status, exp.title))
  widths = [max(len(r[i]) for r in rows) for i in range(5)]
  for row in rows:
    print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[5])
  return 0


def _reproduce(args) -> int:
  from jaxpapers.core import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
  from jaxpapers.core.errors import ConfigError  # pylint: disable=g-import-not-at-top
  names = registry.experiment_names() if args.name == "all" else [args.name]
  exps = [registry.load_experiment(n) for n in names]
  for exp in exps:  # every override must fit every experiment before anything runs
    try:
      exp.config(args.preset, args.overrides)
    except ConfigError as e:
      if args.name != "all":
        raise
      raise UsageError(f"the overrides do not fit experiment {exp.name}: {e}; nothing was run") from None
  all_passed, total_seconds, claims, failed = True, 0.0, 0, 0
  for exp in exps:
    with _Progress(sys.stderr.isatty()) as progress:
      record = experiment_lib.reproduce(exp, args.preset, args.out, progress, args.overrides,
                                        notify=lambda m: _stderr(f"jaxpapers: {m}"))
    all_passed &= record["passed"]
    total_seconds += record["wall_seconds"]
    claims += len(record["claims"])
    failed += sum(not c["passed"] for c in record["claims"])
    for claim in record["claims"]:
      mark = "pass" if claim["passed"] else "FAIL"
      measured = claim["measured"]
      measured = f"{measured:.4g}" if isinstance(measured, float) else measured
      print(f"  [{mark}] {claim['id']}: {measured} ({claim['threshold']})")
    verdict = "passed" if record["passed"] else "FAILED"
    print(f"{exp.name} ({args.preset}): {verdict} in {record['wall_seconds']:.0f} s; "
          f"report: {args.out / exp.name / 'report.md'}")
  if args.name == "all":
    print(f"all ({args.preset}): {len(exps)} experiments, {claims - failed}/{claims} claims passed "
          f"in {total_seconds:.0f} s")
  return 0 if all_passed else EXIT_FAILED_CLAIMS


def _train(args) -> int:
  from jaxpapers.core import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  distributed = (args.coordinator, args.num_processes, args.process_id)
  if any(v is not None for v in distributed) and not all(v is not None for v in distributed):
    raise UsageError(
        "multi-host needs all three of --coordinator HOST:PORT, --num-processes N, --process-id I")
  experiment_lib.init_distributed(*distributed)
  import jax  # pylint: disable=g-import-not-at-top

  from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
  exp = registry.load_experiment(args.name)
  config = exp.config(args.preset, args.overrides)
  workdir = args.workdir or Path("runs") / f"{args.name}-{args.preset}"
  main_process = jax.process_index() == 0
  show = main_process and not args.no_progress and sys.stderr.isatty()

  def notify(message: str) -> None:
    if main_process:
      _stderr(f"jaxpapers: {message}")

  with _Progress(show) as progress:
    run = experiment_lib.train(exp, config, workdir, args.overwrite, progress, notify, args.stage)
  result = run.result
  if main_process:
    if not result.completed:
      where = run.workdir if run.workdir is not None else workdir
      _stderr(f"jaxpapers: stopped by SIGTERM at step {result.step}; checkpoint saved in "
              f"{where}; run the same command to resume")
      return EXIT_STOPPED
    print(json.dumps({"step": result.step, "final_metrics": result.final_metrics,
                      "params_checksum": result.params_checksum}))
  return 0


def _plan(args) -> int:
  from jaxpapers.core import plan as plan_lib  # pylint: disable=g-import-not-at-top
  record = plan_lib.plan(args.name, args.preset, args.stage, args.devices, args.device_memory,
                         args.overrides, topology=args.topology)
  print(json.dumps(record) if args.json else plan_lib.format_table(record))
  return EXIT_DOES_NOT_FIT if record["fits"] is False else 0


def _make_out(out: Path) -> None:
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UsageError(f"cannot create {out} ({e.strerror}); choose another --out") from None


def _print_table(rows) -> None:
  widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
  for row in rows:
    print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def _bench_gpu(args) -> int:
  """The accelerator suite (jaxpapers/core/bench_gpu.py): exit 0 when nothing failed or raised."""
  import jax  # pylint: disable=g-import-not-at-top

  from jaxpapers.core import bench_gpu  # pylint: disable=g-import-not-at-top
  backend = jax.default_backend()
  if backend != "gpu" and not args.dry_run:
    raise UsageError(f"no GPU here (jax's backend is {backend}); run `jaxpapers bench gpu` on a GPU "
                     "machine (scripts/bench_gpu.sh), or pass --dry-run for the CPU check")
  _make_out(args.out)
  record = bench_gpu.run(args.out, args.dry_run, notify=lambda line: print(f"gpu: {line}", flush=True))
  _print_table(bench_gpu.table(record))
  print(f"wrote {args.out / bench_gpu.output_name(args.dry_run)}")
  return EXIT_FAILED_CLAIMS if record["passed"] is False else 0


def _bench(args) -> int:
  from jaxpapers.core import bench as bench_lib  # pylint: disable=g-import-not-at-top
  from jaxpapers.core import registry  # pylint: disable=g-import-not-at-top
  if args.name == "gpu":
    return _bench_gpu(args)
  if args.dry_run:
    raise UsageError(f"--dry-run is for `jaxpapers bench gpu` only; run `jaxpapers bench {args.name}` "
                     "without it")
  bench = registry.load_benchmark(args.name)
  _make_out(args.out)
  rows, record = bench()
  _print_table(rows)
  bench_lib.check_record(record, args.name)  # every bench_NAME.json has the shared schema
  path = args.out / f"bench_{args.name}.json"
  path.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
  print(f"wrote {path}")
  return 0


def _prepare(args) -> int:
  """`prepare arxiv`: the pipeline (jaxpapers/text/prepare.py) with a progress bar, then the counts."""
  from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn  # pylint: disable=g-import-not-at-top

  from jaxpapers.text import latex, prepare  # pylint: disable=g-import-not-at-top
  config = latex.PipelineConfig(match=args.match, faithful=args.faithful)
  with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                disable=args.no_progress or not sys.stderr.isatty()) as bar:
    def progress(total: int):
      task = bar.add_task("prepare arxiv", total=total)
      return lambda: bar.advance(task)
    record = prepare.prepare_arxiv(args.input, args.out, args.metadata, config, args.overwrite, progress)
  counters = record["counters"]
  print("  ".join(f"{k} {v}" for k, v in counters.items() if v or k in ("records", "written")))
  print(f"yield {record['losses']['yield']:.3f}; wrote {counters['train']} training and {counters['validation']} "
        f"validation documents to {args.out} (stats.json has every count)")
  return 0


def _eval(args) -> int:
  """`eval nessie|passk` (jaxpapers/evals/cli_eval.py): the scores on stdout, the record as JSON."""
  from jaxpapers.evals import cli_eval  # pylint: disable=g-import-not-at-top
  if args.harness == "nessie":
    record, lines = cli_eval.eval_nessie(args.cases, args.replies, args.keyword_mode, not args.case_insensitive)
  else:
    record, lines = cli_eval.eval_passk(args.results, cli_eval.parse_ks(args.k), cli_eval.parse_weights(args.weights))
  path = cli_eval.write_json(args.out, record)
  print("\n".join(lines))
  print(f"wrote {path}")
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  parser = _parser()
  args, extra = parser.parse_known_args(argv)
  if args.command in ("train", "reproduce", "plan"):  # `key=value` overrides may follow options
    args.overrides += [e for e in extra if "=" in e and not e.startswith("-")]
    extra = [e for e in extra if e not in args.overrides]
  if extra:
    parser.error(f"unrecognized arguments: {' '.join(extra)}")
  try:
    if args.command == "list":
      return _list()
    if args.command == "reproduce":
      return _reproduce(args)
    if args.command == "train":
      return _train(args)
    if args.command == "plan":
      return _plan(args)
    if args.command == "prepare":
      return _prepare(args)
    if args.command == "eval":
      return _eval(args)
    return _bench(args)
  except UsageError as e:
    _stderr(f"jaxpapers: error: {e}")
    return EXIT_USAGE
  except KeyboardInterrupt:
    _stderr("jaxpapers: interrupted")
    return 130


def entry() -> None:
  """Console-script entry. A usage error exits at once: nothing was saved on that path, and
  background threads of half-opened libraries (orbax, tensorstore) must not print on the way out:
  the late "Event loop is closed" callbacks of a failed checkpoint restore are filtered for the
  whole command."""
  with noise.closed_loop_noise_filtered():
    code = main()
    if code == EXIT_USAGE:
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


if __name__ == "__main__":
  entry()
