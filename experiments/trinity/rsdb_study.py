"""RSDB vs sequential packing, data only (Trinity, arXiv 2602.17004).

Our CPU-scale protocol (see experiments/trinity/README.md) for the report's RSDB.

Protocol: an infinite stream of Markov documents (8 uniform domains, length
``clip(lognormal(7.0, 1.3), 16, 200000)``) is packed into batches of 16 rows of
256 tokens by sequential packing (concatenate and cut) and by RSDB with
user/internal buffer sizes 16/32, 64/128 and 256/512 (our reading of the report:
uniform random live document, copy ``min(space_left, doc_left)`` tokens from its read head,
bulk refill when the live count drops to the user size). Per step we measure
``DomTV_t = 1/2 sum_k |p_{t,k} - 1/8|`` (token share of domain k in batch t)
and check that every row holds exactly S tokens with segment ids 1, 2, ...
per document piece. A finite set of documents is then drained through RSDB to
check that every document token is emitted exactly once, in document order,
and that each segment is one contiguous piece of one document.

Claims: mean DomTV of RSDB(64/128) <= 0.5 x sequential (smoke, 50
steps: <= 0.6); every row exactly S tokens; conservation; segment ids monotone
within each document piece.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxpapers.core import report
from jaxpapers.data.documents import MarkovDocuments, markov_domains
from jaxpapers.data.packing import RSDB, SequentialPacker, domain_tv

PAPER_DOMTV = {"sequential": 0.76, "rsdb_16_32": 0.35, "rsdb_64_128": 0.27, "rsdb_256_512": 0.25}


@dataclasses.dataclass(frozen=True)
class RSDBStudyConfig:
  """RSDB study protocol settings.

  Attributes:
    steps: Batches measured per loader.
    batch_size: Rows (sequences) per batch.
    seq_len: Tokens per row S.
    num_domains: Markov domains (uniform mix).
    vocab_size: Tokens per domain chain.
    length_mean: Mean of the log document length.
    length_sigma: Std of the log document length.
    min_len: Shortest document.
    max_len: Longest document.
    buffers: (user, internal) RSDB buffer sizes compared with sequential packing.
    gated_buffer: The RSDB size whose DomTV ratio is a claim.
    max_ratio: Pass threshold of DomTV(RSDB gated) / DomTV(sequential).
    conservation_docs: Size of the finite document set drained for conservation.
    conservation_max_len: Longest document of that set.
    seed: Seed of chains, documents and picks.
  """

  steps: int = 400
  batch_size: int = 16
  seq_len: int = 256
  num_domains: int = 8
  vocab_size: int = 256
  length_mean: float = 7.0
  length_sigma: float = 1.3
  min_len: int = 16
  max_len: int = 200_000
  buffers: tuple[tuple[int, int], ...] = ((16, 32), (64, 128), (256, 512))
  gated_buffer: tuple[int, int] = (64, 128)
  max_ratio: float = 0.5
  conservation_docs: int = 300
  conservation_max_len: int = 200_000
  seed: int = 0


PRESETS = {
    "smoke": RSDBStudyConfig(steps=50, max_ratio=0.6, conservation_docs=60,
                             conservation_max_len=20_000),
    "small": RSDBStudyConfig(),
    "paper": RSDBStudyConfig(),
}


def _name(buffer: tuple[int, int]) -> str:
  return f"rsdb_{buffer[0]}_{buffer[1]}"


def _row_checks(batch: dict[str, np.ndarray], seq_len: int) -> tuple[int, int]:
  """(rows with exactly seq_len tokens, rows whose segment ids are not 1, 2, ...)."""
  seg = batch["segment_ids"]
  full = int(np.sum((seg > 0).sum(1) == seq_len))
  steps = np.diff(seg, axis=1)
  bad = (seg[:, 0] != 1) | np.any((steps < 0) | (steps > 1), axis=1)
  return full, int(bad.sum())


def _measure_domtv(config: RSDBStudyConfig, stream: MarkovDocuments) -> dict[str, Any]:
  loaders = {"sequential": SequentialPacker(stream, config.batch_size, config.seq_len)}
  for buffer in config.buffers:
    loaders[_name(buffer)] = RSDB(stream, config.batch_size, config.seq_len,
                                  buffer_size=buffer[0], capacity=buffer[1], seed=config.seed)
  curves, rows, full, bad_segments = {}, 0, 0, 0
  for name, loader in loaders.items():
    curve = []
    for _ in range(config.steps):
      batch = next(loader)
      curve.append(domain_tv(batch["domains"], stream.mix))
      f, b = _row_checks(batch, config.seq_len)
      rows, full, bad_segments = rows + config.batch_size, full + f, bad_segments + b
    curves[name] = curve
  return {
      "curves": curves,
      "domtv": {name: float(np.mean(c)) for name, c in curves.items()},
      "rows": rows, "full_rows": full, "segment_row_violations": bad_segments,
  }


def _conservation(config: RSDBStudyConfig, stream: MarkovDocuments) -> dict[str, Any]:
  """Drains RSDB(gated) over a finite document set; counts every deviation."""
  loader = RSDB(stream, config.batch_size, config.seq_len, buffer_size=config.gated_buffer[0],
                capacity=config.gated_buffer[1], seed=config.seed, with_provenance=True)
  doc_ids, positions, tokens, piece_violations, partial_rows, batches = [], [], [], 0, 0, 0
  for batch in loader:
    batches += 1
    seg, d, p = batch["segment_ids"], batch["doc_ids"], batch["positions"]
    real = seg > 0
    partial_rows += int(np.sum(real.sum(1) < config.seq_len))
    same = (np.diff(seg, axis=1) == 0) & real[:, 1:]
    broken = same & ((np.diff(d, axis=1) != 0) | (np.diff(p, axis=1) != 1))
    piece_violations += int(broken.sum())
    doc_ids.append(d[real])
    positions.append(p[real])
    tokens.append(batch["inputs"][real])
  doc_ids, positions, tokens = map(np.concatenate, (doc_ids, positions, tokens))
  order = np.argsort(doc_ids, kind="stable")  # grouped by document, emission order kept
  doc_ids, positions, tokens = doc_ids[order], positions[order], tokens[order]
  counts = np.bincount(doc_ids, minlength=len(stream))
  starts = np.concatenate([[0], np.cumsum(counts)])
  violations, total = 0, 0
  for index in range(len(stream)):
    doc = stream[index].tokens
    total += len(doc)
    got = slice(starts[index], starts[index + 1])
    if counts[index] != len(doc):
      violations += abs(int(counts[index]) - len(doc))
      continue
    violations += int(np.sum(positions[got] != np.arange(len(doc))))
    violations += int(np.sum(tokens[got] != doc))
  return {"documents": len(stream), "tokens": total, "emitted": int(len(tokens)),
          "violations": violations, "piece_violations": piece_violations,
          "partial_rows": partial_rows, "batches": batches}


def rsdb_claims(preset: str) -> tuple[list[report.Claim], dict[str, Any]]:
  """Runs the RSDB study protocol of ``preset`` ("smoke", "small" or "paper").

  Returns:
    (claims, results): results holds the mean and per-step DomTV of every
    loader, the row checks and the conservation counts.
  """
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; choose from {sorted(PRESETS)}.")
  config = PRESETS[preset]
  start = time.perf_counter()
  domains = markov_domains(config.num_domains, config.vocab_size, seed=config.seed)
  lengths = dict(length_mean=config.length_mean, length_sigma=config.length_sigma,
                 min_len=config.min_len)
  stream = MarkovDocuments(domains, seed=config.seed, max_len=config.max_len, **lengths)
  results: dict[str, Any] = {"preset": preset, "config": dataclasses.asdict(config)}
  results.update(_measure_domtv(config, stream))
  finite = MarkovDocuments(domains, seed=config.seed + 1, max_len=config.conservation_max_len,
                           num_documents=config.conservation_docs, **lengths)
  results["conservation"] = _conservation(config, finite)
  gated = _name(config.gated_buffer)
  ratio = results["domtv"][gated] / results["domtv"]["sequential"]
  results["ratio"] = ratio
  results["wall_seconds"] = time.perf_counter() - start
  cons = results["conservation"]
  size = f"{config.gated_buffer[0]}/{config.gated_buffer[1]}"
  claims = [
      report.at_most(
          "rsdb_domtv_ratio",
          f"mean DomTV of RSDB({size}) over sequential packing, {config.steps} steps "
          f"(measured {results['domtv'][gated]:.3f} vs {results['domtv']['sequential']:.3f})",
          ratio, config.max_ratio,
          paper_value=round(PAPER_DOMTV[gated] / PAPER_DOMTV["sequential"], 3)),
      report.at_least(
          "rsdb_rows_exactly_S",
          f"fraction of the {results['rows']} emitted rows (all loaders) with exactly "
          f"S={config.seq_len} tokens", results["full_rows"] / results["rows"], 1.0,
          paper_value=1.0),
      report.at_most(
          "rsdb_conservation",
          f"document tokens not emitted exactly once in order, over {cons['documents']} documents "
          f"({cons['tokens']} tokens) drained through RSDB({size})", cons["violations"], 0,
          paper_value=0),
      report.at_most(
          "rsdb_segment_ids_monotone",
          "rows whose segment ids are not 1, 2, ... plus in-segment breaks of document "
          "or position", results["segment_row_violations"] + cons["piece_violations"], 0,
          paper_value=0),
  ]
  return claims, results


def plot_rsdb(path: str | Path, results: dict[str, Any]) -> Path:
  """DomTV per step of every loader (thin) with a 20-step running mean (bold)."""
  path = Path(path)
  fig, ax = report.subplots(figsize=(8, 4.5))
  for i, (name, curve) in enumerate(results["curves"].items()):
    curve = np.asarray(curve)
    steps = np.arange(1, len(curve) + 1)
    window = min(20, len(curve))
    smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
    label = name.replace("rsdb_", "RSDB ").replace("_", "/")
    ax.plot(steps, curve, color=f"C{i}", alpha=0.25, lw=0.8)
    ax.plot(steps[window - 1:], smooth, color=f"C{i}", lw=2,
            label=f"{label}: mean {results['domtv'][name]:.3f}")
  ax.set(xlabel="step", ylabel="DomTV (batch domain share vs global mix)", ylim=(0, 1),
         title="Batch domain heterogeneity: sequential packing vs RSDB")
  ax.legend(fontsize=8, loc="upper right")
  return report.save_figure(fig, path)
