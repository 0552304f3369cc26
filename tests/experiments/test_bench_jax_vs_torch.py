"""bench_jax_vs_torch: the PyTorch reference computes what the JAX loop computes; torch-less message."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from jaxpapers import cli
from jaxpapers.core.errors import UsageError
from jaxpapers.experiments.modular_addition import bench_jax_vs_torch
from jaxpapers.experiments.modular_addition.config import PRESETS

# Measured on the smoke preset (50 steps, CPU): the per-step losses differ by at most 2.4e-7
# relative (about 2 float32 ulp). 1e-5 leaves a 40x margin yet catches real mismatches: a
# one-step shift of the warm-up gives 1.5e-3, b2 0.99 instead of 0.98 1.5e-3, weight decay
# 0.9 instead of 1.0 1.8e-4, and Adam's coupled L2 instead of AdamW 3.8e-2.
LOSS_RTOL = 1e-5


def test_torch_reproduces_the_jax_loss_trajectory():
  pytest.importorskip("torch")
  config = PRESETS["smoke"]
  ref = bench_jax_vs_torch.jax_trajectory(config, 50)
  loop = bench_jax_vs_torch.TorchLoop(config, ref["w_in"], ref["w_out"], ref["pairs"])
  loss, accuracy = loop.trajectory(50)
  assert ref["loss"].shape == (50,) and ref["loss"][-1] < ref["loss"][0]  # it trains
  np.testing.assert_allclose(loss, ref["loss"], rtol=LOSS_RTOL)
  np.testing.assert_array_equal(accuracy, ref["accuracy"])


def test_without_torch_the_benchmark_names_the_bench_extra(monkeypatch, tmp_path, capsys):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  with pytest.raises(UsageError, match=r"jaxpapers\[bench\]"):
    bench_jax_vs_torch.bench_modular_addition()
  assert cli.main(["bench", "modular_addition", "--out", str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "pip install 'jaxpapers[bench]'" in err
  assert not (tmp_path / "bench_modular_addition.json").exists()
