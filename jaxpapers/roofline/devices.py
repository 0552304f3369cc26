"""Device presets for the roofline model: memory bandwidth, peak throughput, memory capacity.

"Hardware Co-Design Scaling Laws via Roofline Modelling for On-Device LLMs" (Sun et al., arXiv
2602.10377) profiles its candidates on an NVIDIA Jetson Orin (module and power mode not
stated); the Jetson AGX Orin 64GB at MAXN is our default. Peaks are dense (no 2:4 sparsity),
GPU only (the Jetson headline TOPS add the DLAs and count sparsity). Where a datasheet gives no
dense FP16 tensor figure, it is derived as tensor cores x GPU clock x 512 FLOP per clock (an
Ampere third-generation tensor core's dense FP16 rate: 256 FMA per clock), which reproduces the
AGX Orin's 42.5 TFLOPS; dense INT8 is twice that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from jaxpapers.core.errors import ConfigError

GB = 1e9
GiB = 2**30
_AMPERE_TC_FLOP_PER_CLOCK = 512  # dense FP16 per tensor core per clock (256 FMA), see above


@dataclasses.dataclass(frozen=True)
class Device:
  """One accelerator as the roofline sees it.

  Attributes:
    name: a label.
    bandwidth: memory bandwidth in bytes/s.
    peak: compute precision ("fp16", "int8") -> dense peak in FLOP/s (OP/s for int8).
    memory: memory capacity in bytes.
  """

  name: str
  bandwidth: float
  peak: Mapping[str, float]
  memory: float

  def ridge(self, compute: str = "fp16") -> float:
    """The ridge point peak / bandwidth in FLOP/byte."""
    return self.peak[compute] / self.bandwidth

  def scaled(self, *, bandwidth: float = 1.0, peak: float = 1.0) -> Device:
    """This device with its bandwidth and every peak multiplied by the given factors."""
    return dataclasses.replace(self, bandwidth=self.bandwidth * bandwidth,
                               peak={k: v * peak for k, v in self.peak.items()})


def _ampere(tensor_cores: int, clock_hz: float) -> dict[str, float]:
  fp16 = tensor_cores * clock_hz * _AMPERE_TC_FLOP_PER_CLOCK
  return {"fp16": fp16, "int8": 2 * fp16}


DEVICES: dict[str, Device] = {
    # NVIDIA Jetson AGX Orin Series data sheet (DS-10662-001): 64GB 256-bit LPDDR5 at
    # 204.8 GB/s; 2048-core Ampere GPU with 64 tensor cores at up to 1.3 GHz (MAXN): 42.6 TFLOPS
    # dense FP16 by the rule above (spec: ~42.5; GPU 170 sparse INT8 TOPS = 85 dense).
    "agx_orin": Device("Jetson AGX Orin 64GB (MAXN)", 204.8 * GB, _ampere(64, 1.3e9), 64 * GB),
    # Jetson Orin NX Series data sheet (DS-10712-001): 16GB 128-bit LPDDR5 at 102.4 GB/s;
    # 1024-core Ampere GPU, 32 tensor cores at up to 918 MHz.
    "orin_nx": Device("Jetson Orin NX 16GB", 102.4 * GB, _ampere(32, 918e6), 16 * GB),
    # Jetson Orin Nano Series data sheet (DS-11105-001): 8GB 128-bit LPDDR5 at 68 GB/s;
    # 1024-core Ampere GPU, 32 tensor cores at up to 625 MHz (the original, pre-"Super" clocks).
    "orin_nano": Device("Jetson Orin Nano 8GB", 68 * GB, _ampere(32, 625e6), 8 * GB),
    # NVIDIA H200 Tensor Core GPU data sheet (SXM): 141 GB HBM3e at 4.8 TB/s; BF16/FP16
    # tensor 1,979 TFLOPS and INT8 3,958 TOPS with sparsity, half of each dense.
    "h200": Device("NVIDIA H200 SXM", 4.8e12, {"fp16": 989.5e12, "int8": 1979e12}, 141 * GB),
    # Google Cloud TPU v5e documentation (cloud.google.com/tpu/docs/v5e): per chip 197 TFLOPS
    # bf16, 394 TOPS int8, 16 GiB HBM2 at 819 GB/s.
    "tpu_v5e": Device("Google TPU v5e (1 chip)", 819 * GB, {"fp16": 197e12, "int8": 394e12},
                      16 * GiB),
}


def device(name: str) -> Device:
  """The preset `name` (a key of `DEVICES`).

  Raises:
    ConfigError: unknown name (the message lists the presets).
  """
  if name not in DEVICES:
    raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
  return DEVICES[name]
