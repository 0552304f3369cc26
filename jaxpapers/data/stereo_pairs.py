"""Generated rectified stereo pairs with textureless regions (StereoAdapter-2, arXiv 2602.16915:
our CPU stand-in for its long-range-propagation claim, Sec. 3).

Each pair (numpy, seeded):
* disparity (full-resolution pixels, left view): a background plane `d = a + b x + c y`
  (`a` in `base`, `|b|, |c| <= slope`) plus 1-2 foreground rectangles or ellipses of constant
  disparity in `foreground`;
* left image: band-limited texture (Gaussian noise blurred by `scipy.ndimage.gaussian_filter`,
  plus random dots), then 1-2 textureless rectangles (constant intensity) over parts of both
  planes;
* right image: the left one warped backward with the disparity, `I_R(y, x) = I_L(y, x + d(y, x))`
  (bilinear, `scipy.ndimage.map_coordinates`; occlusion artefacts are left in);
* `valid`: pixels farther than `edge_margin` pixels from a disparity edge whose match `x - d`
  lies inside the right image; `textureless`: pixels inside a textureless rectangle.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jaxpapers.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class StereoPairsConfig:
  """The generator's ranges (defaults: 64 x 128 pairs as in our protocol).

  Attributes:
    height, width: image size.
    base: range of the background plane's disparity at the origin.
    slope: bound on the plane's x and y slopes (pixels per pixel).
    foreground: range of the foreground shapes' constant disparity.
    shapes: range (inclusive) of the number of foreground shapes.
    textureless: range (inclusive) of the number of textureless rectangles.
    flat_width, flat_height: ranges of their size (pixels).
    blur: sigma of the texture's Gaussian blur.
    dots: fraction of pixels set to a random dot.
    edge_margin: pixels near a disparity edge left out of `valid`.
  """

  height: int = 64
  width: int = 128
  base: tuple[float, float] = (4.0, 12.0)
  slope: float = 0.03
  foreground: tuple[float, float] = (14.0, 24.0)
  shapes: tuple[int, int] = (1, 2)
  textureless: tuple[int, int] = (1, 2)
  flat_width: tuple[int, int] = (16, 40)
  flat_height: tuple[int, int] = (12, 24)
  blur: float = 1.0
  dots: float = 0.03
  edge_margin: int = 2

  def __post_init__(self):
    if self.height < 8 or self.width < 8:
      raise ConfigError(f"StereoPairsConfig needs height, width >= 8; got {self.height}, {self.width}")
    for name in ("base", "foreground", "shapes", "textureless", "flat_width", "flat_height"):
      lo, hi = getattr(self, name)
      if not 0 <= lo <= hi:
        raise ConfigError(f"StereoPairsConfig.{name} must be a range 0 <= lo <= hi; got {(lo, hi)}")
    if self.flat_height[1] > self.height or self.flat_width[1] > self.width:
      raise ConfigError("StereoPairsConfig: textureless rectangles must fit in the image")


def _disparity(rng: np.random.Generator, cfg: StereoPairsConfig) -> np.ndarray:
  yy, xx = np.mgrid[:cfg.height, :cfg.width].astype(np.float64)
  a = rng.uniform(*cfg.base)
  b, c = rng.uniform(-cfg.slope, cfg.slope, size=2)
  disp = a + b * xx + c * yy
  for _ in range(rng.integers(cfg.shapes[0], cfg.shapes[1] + 1)):
    cy, cx = rng.uniform(0.2, 0.8) * cfg.height, rng.uniform(0.25, 0.85) * cfg.width
    ry, rx = rng.uniform(0.1, 0.25) * cfg.height, rng.uniform(0.06, 0.15) * cfg.width
    if rng.random() < 0.5:
      inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    else:
      inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    disp = np.where(inside, rng.uniform(*cfg.foreground), disp)
  return disp


def _texture(rng: np.random.Generator, cfg: StereoPairsConfig) -> np.ndarray:
  noise = ndimage.gaussian_filter(rng.normal(size=(cfg.height, cfg.width)), cfg.blur)
  image = 0.5 + 0.2 * noise / max(float(noise.std()), 1e-6)
  dots = rng.random((cfg.height, cfg.width)) < cfg.dots
  return np.where(dots, rng.random((cfg.height, cfg.width)), image)


def make_pair(rng: np.random.Generator, cfg: StereoPairsConfig) -> dict[str, np.ndarray]:
  """One pair: `left`, `right` `[H, W, 1]` float32, `disparity` `[H, W]`, `valid` and
  `textureless` `[H, W]` float32 0/1."""
  disp = _disparity(rng, cfg)
  left = _texture(rng, cfg)
  flat = np.zeros((cfg.height, cfg.width), bool)
  for _ in range(rng.integers(cfg.textureless[0], cfg.textureless[1] + 1)):
    w, h = rng.integers(cfg.flat_width[0], cfg.flat_width[1] + 1), rng.integers(
        cfg.flat_height[0], cfg.flat_height[1] + 1)
    y0, x0 = rng.integers(0, cfg.height - h + 1), rng.integers(0, cfg.width - w + 1)
    left[y0:y0 + h, x0:x0 + w] = rng.uniform(0.2, 0.8)
    flat[y0:y0 + h, x0:x0 + w] = True
  yy, xx = np.mgrid[:cfg.height, :cfg.width].astype(np.float64)
  right = ndimage.map_coordinates(left, [yy, xx + disp], order=1, mode="nearest")
  edges = ndimage.maximum_filter(disp, size=3) - ndimage.minimum_filter(disp, size=3) > 1.0
  near_edge = ndimage.binary_dilation(edges, iterations=cfg.edge_margin)
  valid = ~near_edge & (xx - disp >= 0)
  f32 = lambda x: np.asarray(x, np.float32)
  return {"left": f32(left)[..., None], "right": f32(right)[..., None], "disparity": f32(disp),
          "valid": f32(valid), "textureless": f32(flat)}


def stereo_pairs(n: int, seed: int, cfg: StereoPairsConfig = StereoPairsConfig()) -> dict[str, np.ndarray]:
  """`n` pairs from `seed`, stacked (pair i depends only on `(seed, i)`)."""
  if n < 1:
    raise ValueError(f"stereo_pairs needs n >= 1, got {n}")
  pairs = [make_pair(np.random.default_rng([seed, i]), cfg) for i in range(n)]
  return {k: np.stack([p[k] for p in pairs]) for k in pairs[0]}


class StereoPairSource:
  """`n` pairs from `seed` as a random-access source, each drawn when it is read.

  Pair i is `make_pair(default_rng([seed, i]))`, the same bits as `stereo_pairs(n, seed)[k][i]`;
  nothing is held in memory, so a paper-scale set (100k pairs of 480 x 640: ~1 TB stacked) costs
  only the batch being read (about 68 ms of one core per 480 x 640 pair, 2 ms at 64 x 128).
  """

  def __init__(self, n: int, seed: int, cfg: StereoPairsConfig = StereoPairsConfig()):
    if n < 1:
      raise ValueError(f"StereoPairSource needs n >= 1, got {n}")
    self.n, self.seed, self.cfg = n, seed, cfg

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self.n:
      raise IndexError(f"pair {index} of {self.n}")
    return make_pair(np.random.default_rng([self.seed, int(index)]), self.cfg)


def stereo_source(n: int, seed: int, cfg: StereoPairsConfig = StereoPairsConfig()) -> StereoPairSource:
  """`stereo_pairs` as a source for `jaxpapers.data.batches`, drawn lazily (`StereoPairSource`)."""
  return StereoPairSource(n, seed, cfg)
