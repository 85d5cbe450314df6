"""Matching kernels against pairs of known PSFs."""

import numpy as np
import pytest

from romanflow.errors import RomanflowError
from romanflow.psf import convolve_same, matching_kernel, matching_kernels, psf_model


def _gaussian(sigma, n=51):
    y, x = np.mgrid[0:n, 0:n] - (n - 1) / 2.0
    return np.exp(-(x * x + y * y) / (2 * sigma**2)) / (2 * np.pi * sigma**2)


def test_gaussian_pair_gives_the_analytic_kernel():
    kernel = matching_kernel(_gaussian(1.5), _gaussian(2.5), regularization=0.0)
    assert np.abs(kernel - _gaussian(2.0)).max() < 1e-6 * _gaussian(2.0).max()
    assert kernel.sum() == pytest.approx(1.0, abs=1e-9)


def test_wfi_f106_to_f158_kernel_reproduces_the_target_psf():
    f106 = psf_model("WFI07", "F106")
    f158 = psf_model("WFI07", "F158")
    kernels = matching_kernels(f106, f158, [(1000.0, 3000.0)], oversample=4, size=193)
    source = f106.image(1000.0, 3000.0, oversample=4, size=193)
    target = f158.image(1000.0, 3000.0, oversample=4, size=193)
    matched = convolve_same(source, kernels[0])
    assert np.abs(matched - target).max() < 1e-3 * target.max()
    # without the kernel the two differ by far more (the test can fail)
    assert np.abs(source - target).max() > 0.1 * target.max()


def test_bad_kernel_input():
    with pytest.raises(RomanflowError, match="odd side"):
        matching_kernel(np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(RomanflowError, match="shape of psf_from"):
        matching_kernel(_gaussian(1.0, 11), _gaussian(1.0, 13))
