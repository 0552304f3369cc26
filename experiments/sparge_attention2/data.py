"""Generated "videos" for the velocity-distillation study (arXiv 2602.13515).

Data of our distillation study B, see experiments/sparge_attention2/README.md.

Each example is T frames of an S x S grid with two channels: a Gaussian blob and a sinusoid
grating that both move along one of `num_classes` directions (the class label) with a random
speed, start position, phase, size and contrast; positions wrap around. The "shifted" range of
sizes and contrasts stands in for the paper's fine-tuning set that does not match the
pretraining distribution (paper Sec. 3.2, Case 3). Values are standardised with fixed constants so both sets
share one scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxpapers.core.config import check


@dataclasses.dataclass(frozen=True)
class VideoRange:
  """Parameter ranges of one distribution (uniform draws)."""

  sigma: tuple[float, float] = (1.2, 2.5)
  amplitude: tuple[float, float] = (0.6, 1.0)
  speed: tuple[float, float] = (1.0, 2.0)
  grating_period: tuple[float, float] = (6.0, 10.0)
  grating_amplitude: tuple[float, float] = (0.3, 0.6)


ORIGINAL = VideoRange()
SHIFTED = VideoRange(sigma=(2.5, 4.0), amplitude=(1.0, 1.6), speed=(0.5, 1.5),
                     grating_period=(8.0, 14.0), grating_amplitude=(0.1, 0.3))


def shifted_range(shift: float) -> VideoRange:
  """The fine-tuning set's ranges: `shift` of the way from ORIGINAL to SHIFTED (1 = SHIFTED)."""
  def mix(a, b):
    return tuple(x + shift * (y - x) for x, y in zip(a, b))
  return VideoRange(**{f.name: mix(getattr(ORIGINAL, f.name), getattr(SHIFTED, f.name))
                       for f in dataclasses.fields(VideoRange)})
MEAN = np.array([0.066, 0.0])  # fixed per-channel standardisation (the original set's moments)
STD = np.array([0.15, 0.32])


@dataclasses.dataclass(frozen=True)
class VideoDataConfig:
  """Size of the generated videos and of the sets.

  Attributes:
    frames, size: T and S of each T x S x S example (two channels).
    num_classes: motion directions (the condition).
    train_examples: examples of the teacher's (original) and of the fine-tuning (shifted) set.
    eval_examples: held-out (x_0, eps, t, label) tuples of the original distribution.
    shift: how far the fine-tuning set's ranges move from the original ones towards SHIFTED.
  """

  frames: int = 4
  size: int = 16
  num_classes: int = 8
  train_examples: int = 4096
  eval_examples: int = 256
  shift: float = 1.0

  def __post_init__(self):
    check(self.frames >= 1, "data.frames", self.frames, ">= 1")
    check(self.size >= 4, "data.size", self.size, ">= 4")
    check(self.num_classes >= 1, "data.num_classes", self.num_classes, ">= 1")
    check(self.train_examples >= 1, "data.train_examples", self.train_examples, ">= 1")
    check(self.eval_examples >= 1, "data.eval_examples", self.eval_examples, ">= 1")
    check(0 <= self.shift <= 2, "data.shift", self.shift, "in [0, 2]")


CHUNK = 2048  # examples whose pixels are computed at once


def _draw(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
  return rng.uniform(bounds[0], bounds[1], n)


def make_videos(config: VideoDataConfig, n: int, distribution: str,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(videos float32 [n, T, S, S, 2], labels int32 [n]) of the named distribution.

  Every example's parameters are drawn first; its pixels are then computed `CHUNK` examples at
  a time (the paper preset's 65,536 examples at 32 x 32 would take about 13 GB of float64
  temporaries at once), which gives the same arrays bit for bit.
  """
  if distribution not in ("original", "shifted"):
    raise ValueError(f"unknown distribution {distribution!r}; choose original or shifted")
  r = ORIGINAL if distribution == "original" else shifted_range(config.shift)
  rng = np.random.default_rng(seed)
  t, s = config.frames, config.size
  labels = rng.integers(0, config.num_classes, n)
  angle = 2 * np.pi * labels / config.num_classes
  direction = np.stack([np.cos(angle), np.sin(angle)], -1)  # (dy, dx)
  speed = _draw(rng, r.speed, n)
  start = rng.uniform(0, s, (n, 2))
  sigma, amp = _draw(rng, r.sigma, n), _draw(rng, r.amplitude, n)
  period, gamp = _draw(rng, r.grating_period, n), _draw(rng, r.grating_amplitude, n)
  phase = rng.uniform(0, 2 * np.pi, n)
  frames = np.arange(t)
  coords = np.arange(s)
  yy, xx = np.meshgrid(coords, coords, indexing="ij")
  out = np.empty((n, t, s, s, 2), np.float32)
  for lo in range(0, n, CHUNK):
    i = slice(lo, min(lo + CHUNK, n))
    d = direction[i]
    centre = start[i, None] + speed[i, None, None] * frames[None, :, None] * d[:, None]
    dy = (coords[None, None, :] - centre[..., 0:1] + s / 2) % s - s / 2
    dx = (coords[None, None, :] - centre[..., 1:2] + s / 2) % s - s / 2
    dist2 = dy[..., :, None] ** 2 + dx[..., None, :] ** 2
    blob = amp[i, None, None, None] * np.exp(-dist2 / (2 * sigma[i, None, None, None] ** 2))
    along = d[:, 0, None, None] * yy + d[:, 1, None, None] * xx
    shift = speed[i, None] * frames[None]
    wave = np.sin(2 * np.pi * (along[:, None] - shift[..., None, None]) / period[i, None, None, None]
                  + phase[i, None, None, None])
    grating = gamp[i, None, None, None] * wave
    out[i] = (np.stack([blob, grating], -1) - MEAN) / STD
  return out, labels.astype(np.int32)
