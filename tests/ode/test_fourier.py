"""Fourier parametrization against analytic cosines."""

import numpy as np
import pytest

from jaxpapers.ode import fourier


def test_pure_cosine_has_its_magnitude_and_phase_at_its_frequency():
  p, k, amplitude, phase = 23, 4, 0.7, -1.2
  j = np.arange(p)
  v = amplitude * np.cos(2 * np.pi * k * j / p + phase) + 0.3 * np.cos(2 * np.pi * 9 * j / p)
  magnitudes, phases = fourier.magnitudes_and_phases(v)
  assert magnitudes.shape == (11,)
  np.testing.assert_allclose(magnitudes[k - 1], amplitude, rtol=1e-5)
  np.testing.assert_allclose(phases[k - 1], phase, atol=1e-5)
  np.testing.assert_allclose(magnitudes[8], 0.3, rtol=1e-5)
  others = np.delete(np.asarray(magnitudes), [k - 1, 8])
  assert np.all(others < 1e-5)


def test_ipr_is_one_for_one_frequency_and_one_over_k_for_a_flat_spectrum():
  assert float(fourier.inverse_participation_ratio(np.eye(11)[3])) == pytest.approx(1.0)
  assert float(fourier.inverse_participation_ratio(np.ones(11))) == pytest.approx(1 / 11)


def test_even_modulus_is_refused():
  with pytest.raises(ValueError, match="odd modulus"):
    fourier.fourier_coefficients(np.zeros(10))
