"""Rendering in worker processes gives the image rendered here, sum for sum."""

import numpy as np
import pytest

from romanflow.simulate import render
from romanflow.simulate.scene import random_scene

SHAPE = (600, 600)  # 2 x 2 PSF nodes: the PSFs go to the workers


def _gaussian_stack(sca, optical_element, x, y, wavelengths, *, oversample, size, **kwargs):
    """A stand-in for galsim's PSFs, different at every wavelength and position (fraction of flux per pixel)."""
    u = (np.arange(size) - (size - 1) / 2) / oversample
    out = []
    for lam in wavelengths:
        sigma = 0.5 + lam / 3000.0 + 1e-4 * x + 2e-4 * y
        g = np.exp(-0.5 * (u / sigma) ** 2)
        image = np.outer(g, g * (1.0 + 0.01 * u))
        out.append(image * oversample**2 / image.sum())
    return np.array(out)


@pytest.fixture
def stand_in_psfs(monkeypatch):
    monkeypatch.setattr(render, "monochromatic_stack", _gaussian_stack)
    monkeypatch.setattr(render, "_PSF_CACHE", type(render._PSF_CACHE)())
    return render._PSF_CACHE


def test_workers_render_the_image_rendered_in_process(stand_in_psfs):
    table = random_scene(270.0, 66.0, 0.1, n_sources=700, seed=5).table
    rng = np.random.default_rng(2)
    x = rng.uniform(-150, SHAPE[1] + 150, len(table))
    y = rng.uniform(-150, SHAPE[0] + 150, len(table))
    flux = 10.0 ** rng.uniform(0.0, 4.0, len(table))
    kwargs = dict(north_angle_deg=30.0, parity=-1, pixel_scale=0.11)
    assert (table["type"] != "star").sum() >= 2 * render.MIN_GALAXIES_PER_WORKER

    with render.SourceRenderer("WFI07", "F158", SHAPE, workers=2) as renderer:
        forked = renderer._pool is not None  # the PSFs were sent to workers (where the platform forks)
        parallel = renderer.render(table, x, y, flux, **kwargs)
    assert len(stand_in_psfs) == 1
    stand_in_psfs.clear()
    serial = render.render_sources(table, x, y, flux, SHAPE, "WFI07", "F158", workers=1, **kwargs)
    np.testing.assert_array_equal(parallel, serial)
    assert forked or "fork" not in __import__("multiprocessing").get_all_start_methods()
    # every source lands: the image holds their flux but what falls off the patch
    assert 0.2 * flux.sum() < serial.sum(dtype=float) < flux.sum()
