"""The sky viewer at ``/`` in real Chromium, against a real server on loopback over a small real survey.

The survey: six L2 exposures (two bands x three epochs) of one star field, made with a variable star;
their L3 mosaics (drizzle), a multi-band catalog of the mosaics, forced photometry of every exposure at
the catalog's positions, HiPS trees of the mosaics, all ingested into a SQLite archive.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

RA0, DEC0 = 150.1, 2.2
L2_SIZE = 248
EPOCHS = ("2027-06-01T00:00:00", "2027-06-04T00:00:00", "2027-06-09T00:00:00")
BANDS = ("F158", "F106")
#: The variable star's flux (DN/s) at each epoch; the other stars are constant.
VARIABLE_FLUX = (3000.0, 9000.0, 5000.0)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _stars(dp):
    """A grid of constant stars plus the variable one (index 0) near the centre, and the brightest (index 1)."""
    g = np.arange(30, L2_SIZE - 30, 37.0) + 0.3
    gx, gy = np.meshgrid(g, g)
    x = np.r_[L2_SIZE / 2 + 10.2, L2_SIZE / 2 - 40.6, gx.ravel()]
    y = np.r_[L2_SIZE / 2 + 5.1, L2_SIZE / 2 + 45.3, gy.ravel()]
    ra, dec = dp.pixel_to_world(x, y)
    flux = np.r_[0.0, 40000.0, np.linspace(300.0, 3000.0, gx.size)]
    return np.asarray(ra), np.asarray(dec), flux


def build_survey(root: Path) -> dict:
    from astropy.time import Time, TimeDelta

    from romanflow.archive import Archive
    from romanflow.cli import main
    from romanflow.formats.asdf_io import write_l2
    from romanflow.geometry import DetectorProjection, pointing_for
    from romanflow.hips import build_hips
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs
    from romanflow.mosaic.synthetic import make_rate_image

    for sub in ("l2", "l3", "cat", "forced"):  # l1 and l2_raw are made by the commands below
        (root / sub).mkdir(parents=True, exist_ok=True)
    pointing = pointing_for(RA0, DEC0, 0.0)
    dp = DetectorProjection("WFI07", pointing, L2_SIZE)
    ra, dec, flux = _stars(dp)
    l2 = {band: [] for band in BANDS}
    for e, epoch in enumerate(EPOCHS):
        for b, band in enumerate(BANDS):
            f = flux.copy()
            f[0] = VARIABLE_FLUX[e]
            im = make_rate_image("WFI07", pointing.with_offsets(0.4 * e, 0.3 * e), L2_SIZE, (ra, dec, f),
                                 seed=100 + 10 * e + b, exposure=e + 1, optical_element=band)
            im.meta["exposure"]["start_time"] = Time(epoch, scale="utc") + TimeDelta(b * 0.01, format="jd")
            im.meta["exposure"]["end_time"] = im.meta["exposure"]["start_time"] + TimeDelta(140.0, format="sec")
            name = f"r0000101001001{b + 1:03d}001_{e + 1:04d}_wfi07_cal.asdf"
            im.meta["filename"] = name
            l2[band].append(write_l2(im, root / "l2" / name))
    cra, cdec = dp.pixel_to_world(L2_SIZE / 2, L2_SIZE / 2)
    cell = skycell_containing(float(cra), float(cdec))[0]
    full = skycell_wcs(cell)
    cx, cy = full.world_to_pixel_values(float(cra), float(cdec))
    n = 2 * L2_SIZE + 40
    grid = cutout_wcs(full, int(cx) - n // 2, int(cy) - n // 2, n, n)
    mosaics = []
    for band in BANDS:
        out = root / "l3" / f"{cell}_{band.lower()}_coadd.asdf"
        make_mosaic(l2[band], grid, out, skycell=cell, optical_element=band, outliers=False)
        mosaics.append(out)
    assert main(["catalog", *map(str, mosaics), "-o", str(root / "cat"), "--name", f"{cell}_cat", "--no-psf",
                 "--psf-fwhm", "0.2", "--hats", str(root / "hats" / "survey"), "-q"]) == 0
    catalog = root / "cat" / f"{cell}_cat.parquet"
    every_l2 = [str(p) for band in BANDS for p in l2[band]]
    assert main(["catalog", *every_l2, "--forced", str(catalog), "-o", str(root / "forced"),
                 "--psf-fwhm", "0.2", "-q"]) == 0
    build_hips(mosaics, root / "hips")
    # one raw exposure and its calibration with the default ramp fit, for the recalibration notebook
    assert main(["simulate", "--detectors", "WFI01", "--size", "small", "--n-sources", "400", "-o", str(root / "l1"),
                 "-q"]) == 0
    assert main(["calibrate", *map(str, sorted((root / "l1").glob("*_uncal.asdf"))), "-o", str(root / "l2_raw"),
                 "-q"]) == 0
    with Archive.open(f"sqlite:///{root / 'archive.db'}", root=root) as archive:
        # forced catalogs by name: folder ingest looks for the survey's own product patterns
        archive.ingest([root / "l1", root / "l2_raw", root / "l2", root / "l3", root / "cat",
                        *sorted((root / "forced").glob("*_forced.parquet"))])


def survey_stars():
    """(ra, dec, flux) of the survey's stars: index 0 the variable one, index 1 the brightest."""
    from romanflow.geometry import DetectorProjection, pointing_for

    return _stars(DetectorProjection("WFI07", pointing_for(RA0, DEC0, 0.0), L2_SIZE))


def shared_survey(tmp_path_factory) -> Path:
    """The survey's folder, built once per test session (and shared by pytest-xdist workers: the first
    to arrive builds it under a lock, the others wait for it)."""
    import fcntl
    import os
    import shutil

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "viewer_survey"
    with open(base / "viewer_survey.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            build_survey(root)
            (root / "complete").write_text("built\n")
    return root


class LoopbackServer:
    """``romanflow.services`` on a free loopback port in a thread (uvicorn), over one archive."""

    def __init__(self, root: Path):
        import uvicorn

        from romanflow.archive import Archive
        from romanflow.services.app import create_app

        self.archive = Archive.open(f"sqlite:///{root / 'archive.db'}", root=root)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.archive), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        assert self.server.started, "server did not start"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.archive.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base URL, survey) of a server on loopback over the survey's archive."""
    root = shared_survey(tmp_path_factory)
    with LoopbackServer(root) as server:
        yield server.url, {"root": root, "stars": survey_stars(), "archive": server.archive}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, base, problems):
    """A page at ``base`` with every console error and every request off the server recorded in ``problems``."""
    page = browser.new_page(viewport={"width": 1100, "height": 700})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def route(r):
        if r.request.url.startswith(base):
            r.continue_()
        else:
            problems.append(f"request off the server: {r.request.url}")
            r.abort()

    page.route("**/*", route)
    return page


def test_viewer_endpoints_answer_json(served):
    import httpx

    base, survey = served
    ra, dec, _ = survey["stars"]
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "aladin" in page.text
        config = client.get("/viewer/config.json").json()
        names = {t["name"] for t in config["hips"]}
        assert names == {"F158", "F106", "colour"}
        assert abs(config["ra"] - np.mean(ra)) < 0.01 and abs(config["dec"] - np.mean(dec)) < 0.01
        assert client.get("/hips/F158/properties").status_code == 200
        assert client.get("/hips/F158/Moc.fits").headers["content-type"] == "application/fits"
        assert client.get("/hips/../archive.db").status_code == 404
        # a tile not built (no data there) is an empty tile; a malformed tile name is not found
        blank = client.get("/hips/F158/Norder13/Dir0/Npix5.png")
        assert blank.status_code == 200 and blank.headers["content-type"] == "image/png"
        assert client.get("/hips/F158/Norder13/Dir10000/Npix5.png").status_code == 404
        assert client.get("/hips/nosuchtree/Norder13/Dir0/Npix5.png").status_code == 404
        sources = client.get("/viewer/sources", params={"ra": ra[1], "dec": dec[1], "radius": 0.002}).json()
        assert sources["rows"], "the cone around the brightest star holds catalog rows"
        bad = client.get("/viewer/sources", params={"ra": "x", "dec": 0})
        assert bad.status_code == 400 and "ra" in bad.json()["error"]
        curve = client.get("/viewer/lightcurve", params={"ra": ra[0], "dec": dec[0]}).json()
        assert {p["band"] for p in curve["points"]} == set(BANDS)
        assert len(curve["points"]) == len(BANDS) * len(EPOCHS)


def test_light_curve_follows_the_variable_star(served):
    """Forced PSF fluxes of the variable star rise and fall as the simulator made them, in both bands."""
    import httpx

    base, survey = served
    ra, dec, _ = survey["stars"]
    curve = httpx.get(base + "viewer/lightcurve", params={"ra": ra[0], "dec": dec[0]}, timeout=30).json()
    for band in BANDS:
        points = sorted((p for p in curve["points"] if p["band"] == band), key=lambda p: p["mjd"])
        fluxes = np.array([p["flux"] for p in points])
        ratios = fluxes / fluxes[0]
        np.testing.assert_allclose(ratios, np.array(VARIABLE_FLUX) / VARIABLE_FLUX[0], rtol=0.1)
        assert np.all(np.diff([p["mjd"] for p in points]) > 2.5)


def test_page_renders_hips_without_console_errors(served, browser):
    """The page loads with no console error and nothing fetched elsewhere; the HiPS renders, and its
    bright pixels are where the mosaic's brightest star is."""
    base, survey = served
    problems = []
    page = _open(browser, base, problems)
    start = time.perf_counter()
    page.goto(base)
    page.wait_for_function("window.romanflowViewer && window.romanflowViewer.ready", timeout=30000)
    page.wait_for_function("window.romanflowViewer.coneDone >= 1", timeout=30000)
    _wait_for_tiles(page)
    first_render = time.perf_counter() - start
    page.uncheck("#show-sources")
    page.uncheck("#show-footprints")
    page.wait_for_timeout(500)
    ra, dec, flux = survey["stars"]
    shot = _screenshot(page)
    assert shot.std() > 5, "the HiPS view is blank"
    # where does the brightest star fall on screen? Aladin's own projection answers
    x, y = page.evaluate(f"window.romanflowViewer.aladin.world2pix({ra[1]}, {dec[1]})")
    ys, xs = np.unravel_index(np.argmax(_smooth(shot)), shot.shape)
    assert np.hypot(xs - x, ys - y) < 6, f"brightest screen pixel at {(xs, ys)}, brightest star drawn at {(x, y)}"
    assert not problems, problems
    print(f"time to first render: {first_render:.2f} s")  # reported with -s; the figure lives in the README
    page.close()


def _screenshot(page):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.locator("#aladin").screenshot())).convert("L"), float)


def _wait_for_tiles(page, timeout_s=30.0):
    """Screenshots of the view until one shows star-bright pixels (tiles drawn); the last one."""
    deadline = time.perf_counter() + timeout_s
    while True:
        shot = _screenshot(page)
        if (shot > 200).sum() > 20 or time.perf_counter() > deadline:
            return shot
        page.wait_for_timeout(100)


def _smooth(image):
    from scipy.ndimage import uniform_filter

    return uniform_filter(image, 5)


def test_clicking_a_source_shows_its_row_and_light_curve(served, browser):
    base, survey = served
    ra, dec, _ = survey["stars"]
    problems = []
    page = _open(browser, base, problems)
    page.goto(base)
    page.wait_for_function("window.romanflowViewer && window.romanflowViewer.ready", timeout=30000)
    page.fill("#coords", f"{ra[0]:.6f} {dec[0]:.6f}")
    page.click("#goto button")
    page.wait_for_function("window.romanflowViewer.sourceCount > 0", timeout=30000)
    page.wait_for_timeout(600)
    x, y = page.evaluate(f"window.romanflowViewer.aladin.world2pix({ra[0]}, {dec[0]})")
    box = page.locator("#aladin").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("window.romanflowViewer.detailsShown >= 1", timeout=30000)
    row = page.locator("#source-row").inner_text()
    assert "ra" in row and "psf_f158_flux" in row
    selected = page.evaluate("window.romanflowViewer.selected")
    assert np.hypot((selected["ra"] - ra[0]) * np.cos(np.radians(dec[0])), selected["dec"] - dec[0]) * 3600 < 0.3
    assert page.locator("#lightcurve svg circle.point").count() == len(BANDS) * len(EPOCHS)
    assert page.locator("#cutouts img").count() == len(BANDS)
    page.wait_for_function("[...document.querySelectorAll('#cutouts img')].every(i => i.complete && i.naturalWidth > 0)",
                           timeout=30000)
    assert not problems, problems
    page.close()
