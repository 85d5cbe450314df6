"""Simulate L1 exposures of WFI detectors from a scene, with their truth.

For each detector, :func:`simulate_detector` renders the scene's sources at
their true positions (the pointing with its injected error), adds the
zodiacal and thermal sky, multiplies by the flat, adds the dark current, then
samples the ramp read by read (:mod:`romanflow.simulate.ramp`): Poisson
charge, cosmic rays, full well, non-linearity, read noise, averaging into
resultants, correlated read noise, quantisation to uint16. Every per-pixel
property comes from :class:`romanflow.detector_model.DetectorModel`.

Outputs of :func:`simulate` in ``output_dir``, for each detector ``wfiNN``:

``<root>_wfiNN_uncal.asdf``
    L1 ``ScienceRawModel``; ``meta.wcsinfo`` and ``meta.pointing`` hold the
    *commanded* pointing.
``truth/<root>_wfiNN_sources.parquet``
    Sources on or near the detector: ``source_id``, ``type``, true ``ra``/``dec``
    at the exposure epoch (deg), ``x``/``y`` (0-based science pixels, the frame
    of L2 images), ``flux_e`` (e-/s), ``flux_dn`` (DN/s at the detector's nominal
    gain, the unit of flat-fielded L2 images), ``mag`` (AB in the filter), ``on_detector``.
``truth/<root>_wfiNN_rate.npy``
    Noiseless scene rate (sources + sky) in DN/s on the science pixels
    (``science_size²`` float32) at the nominal gain: what a perfectly calibrated
    L2 image shows (flat field, which carries the channel gains, divided out;
    dark subtracted).
``truth/<root>_wfiNN_cosmic_rays.parquet``
    Injected hits: ``x``, ``y`` (0-based science pixels), ``read`` (1-based: the
    first read containing the charge), ``amplitude_e`` (e-).
``truth/<root>_wfiNN_wcs.asdf``
    The true gwcs (``wcs``) and true pointing (``pointing``).

and ``truth/<root>_gaia.parquet``, a Gaia DR3-like astrometric catalog of the
scene's stars.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from romanflow import geometry
from romanflow.detector import (
    AMP33_WIDTH,
    FRAME_TIME,
    GALSIM_BANDS,
    N_BORDER,
    N_PIX_SCIENCE,
    PIXEL_SCALE,
    ReadPattern,
    check_filter,
    detector_name,
    detector_number,
    ma_table,
    total_size,
)
from romanflow.detector_model import DEFAULT_MODEL_SEED, DetectorModel
from romanflow.errors import ParameterError, RomanflowError
from romanflow.exposure import RampExposure
from romanflow.kernels.dark_decay import add_dark_decay
from romanflow.kernels.sky_projection import angular_separation
from romanflow.simulate.ramp import COSMIC_RAY_RATE, draw_cosmic_rays, sample_resultants
from romanflow.simulate.render import WING_SIZE, SourceRenderer
from romanflow.simulate.scene import Scene, gaia_catalog, random_scene

DEFAULT_START_TIME = "2027-06-01T00:00:00"


# ------------------------------------------------------------------ photometry
def zero_point(optical_element: str) -> float:
    """AB magnitude giving 1 e-/s over the telescope's collecting area in a filter."""
    import galsim.roman as roman

    band = GALSIM_BANDS[check_filter(optical_element)]
    bandpass = _bandpasses()[band]
    return float(bandpass.zeropoint + 2.5 * math.log10(roman.collecting_area))


def ab_to_electrons(mag, optical_element: str) -> np.ndarray:
    """Count rate (e-/s) of sources of AB magnitude ``mag`` in a filter."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - zero_point(optical_element)))


_BANDPASS_CACHE: dict = {}


def _bandpasses():
    if "bp" not in _BANDPASS_CACHE:
        import galsim.roman as roman

        _BANDPASS_CACHE["bp"] = roman.getBandpasses(AB_zeropoint=True)
    return _BANDPASS_CACHE["bp"]


def sky_rate(optical_element: str, ra: float, dec: float, date, pixel_area_arcsec2: float) -> float:
    """Zodiacal light plus thermal background (e-/s per pixel) for a position and date."""
    import galsim
    import galsim.roman as roman

    band = GALSIM_BANDS[check_filter(optical_element)]
    world = galsim.CelestialCoord(ra * galsim.degrees, dec * galsim.degrees)
    try:
        zodi = roman.getSkyLevel(_bandpasses()[band], world_pos=world, exptime=1.0, date=date)
    except galsim.GalSimValueError as exc:  # galsim refuses positions too close to the sun
        raise RomanflowError(f"no sky level at ra={ra:.4f} dec={dec:.4f} on {date:%Y-%m-%d}: {exc}") from None
    return float(zodi * pixel_area_arcsec2 + roman.thermal_backgrounds.get(band, 0.0))


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class ObservationIds:
    """Identifiers of the exposure, used in ``meta.observation`` and the file names."""

    program: int = 1
    execution_plan: int = 1
    pass_: int = 1
    segment: int = 1
    observation: int = 1
    visit: int = 1
    exposure: int = 1

    @property
    def root(self) -> str:
        """``r<PPPPP><CC><AAA><SSS><OOO><VVV>_<eeee>``."""
        return (f"r{self.program:05d}{self.execution_plan:02d}{self.pass_:03d}{self.segment:03d}"
                f"{self.observation:03d}{self.visit:03d}_{self.exposure:04d}")

    def meta(self) -> dict:
        visit_id = f"{self.program:05d}{self.execution_plan:02d}{self.pass_:03d}{self.segment:03d}" \
                   f"{self.observation:03d}{self.visit:03d}"
        return {
            "observation_id": f"{visit_id}_{self.exposure:04d}",
            "visit_id": visit_id,
            "program": self.program,
            "execution_plan": self.execution_plan,
            "pass": self.pass_,
            "segment": self.segment,
            "observation": self.observation,
            "visit": self.visit,
            "visit_file_group": 1,
            "visit_file_sequence": 1,
            "visit_file_activity": "01",
            "exposure": self.exposure,
        }


@dataclass
class DetectorSimulation:
    """Everything simulated for one detector (kept in memory for tests and notebooks)."""

    exposure: RampExposure
    sources: pd.DataFrame
    rate_dn: np.ndarray
    cosmic_rays: pd.DataFrame
    true_pointing: geometry.Pointing
    extra: dict = field(default_factory=dict)


def _decimal_year(time) -> float:
    return float(time.decimalyear)


def _local_orientation(projection, science_size):
    """North angle from +x (deg), parity and pixel scale (arcsec) at the detector centre."""
    c = (science_size - 1) / 2.0
    ra0, dec0 = projection.pixel_to_world(np.array([c]), np.array([c]))
    step = 1.0 / 3600.0
    ra = np.array([ra0[0], ra0[0] + step / math.cos(math.radians(dec0[0]))])
    dec = np.array([dec0[0] + step, dec0[0]])
    x, y = projection.world_to_pixel(ra, dec)
    north = np.array([x[0] - c, y[0] - c])
    east = np.array([x[1] - c, y[1] - c])
    north_angle = math.degrees(math.atan2(north[1], north[0]))
    cross = north[0] * east[1] - north[1] * east[0]
    parity = 1 if cross > 0 else -1
    scale = 1.0 / math.sqrt(abs(cross))  # arcsec per pixel
    return north_angle, parity, scale, float(ra0[0]), float(dec0[0])


def simulate_detector(scene: Scene, detector, optical_element: str, *, ma_table_number: int = 4,
                      pointing: geometry.Pointing, pointing_error=(0.0, 0.0, 0.0),
                      science_size: int = N_PIX_SCIENCE, seed: int = 0, start_time=DEFAULT_START_TIME,
                      ids: ObservationIds = ObservationIds(), cosmic_ray_rate: float = COSMIC_RAY_RATE,
                      model_seed: int = DEFAULT_MODEL_SEED, sky: bool = True,
                      correlated_noise: bool = True, timings: dict | None = None) -> DetectorSimulation:
    """Simulate one detector's L1 exposure in memory.

    Parameters
    ----------
    scene : Scene
        Sources to render.
    detector : str or int
        ``'WFI01'`` … ``'WFI18'``.
    optical_element : str
        Imaging filter (``'F158'`` …).
    ma_table_number : int
        Multi-accumulation table.
    pointing : Pointing
        Commanded pointing (written to the metadata).
    pointing_error : (float, float, float)
        True minus commanded pointing: (dRA·cos δ, dDec) in arcsec and roll in deg.
    science_size : int
        4088, or a smaller central patch (e.g. 248) for tests.
    seed : int
        Seed of the noise, cosmic rays and every random draw of the exposure.
    start_time : str or astropy Time
        Exposure start (UTC).
    ids : ObservationIds
        Program / visit / exposure numbers.
    cosmic_ray_rate : float
        Hits per cm² per second.
    model_seed : int
        Seed of the detector parameter set (the default store's).
    sky : bool
        Include the zodiacal and thermal background.
    correlated_noise : bool
        Add the detector's correlated read noise (1/f, alternating-column);
        without it the read noise is white only and amp33 carries its white
        noise alone.
    """
    import time as _time

    from astropy.time import Time, TimeDelta

    from romanflow.simulate.correlated_noise import correlated_noise_resultants

    clock = _time.perf_counter
    timings = {} if timings is None else timings
    t0 = clock()
    detector = detector_name(detector)
    optical_element = check_filter(optical_element)
    table = ma_table(ma_table_number)
    pattern = ReadPattern(table.as_list(), FRAME_TIME)
    n_total = total_size(science_size)
    start = Time(start_time, scale="utc")
    end = start + TimeDelta(pattern.exposure_time, format="sec")
    true_pointing = pointing.with_offsets(*pointing_error)
    projection = geometry.DetectorProjection(detector, true_pointing, science_size)
    model = DetectorModel(detector, science_size, model_seed)
    seeds = np.random.SeedSequence([int(seed), detector_number(detector), 0x51A])
    ramp_seq, cr_seq, corr_seq = seeds.spawn(3)

    with SourceRenderer(detector, optical_element, (science_size, science_size)) as renderer:
        # --- while the workers compute the PSFs: the sources near the detector, the detector's arrays
        epoch = _decimal_year(start)
        ra, dec = scene.positions_at(epoch)
        margin = WING_SIZE // 2
        idx = _sources_within(projection, ra, dec, science_size, margin)
        x, y = projection.world_to_pixel(ra[idx], dec[idx])
        near = (x > -margin) & (x < science_size - 1 + margin) & (y > -margin) & (y < science_size - 1 + margin)
        idx, x, y = idx[near], x[near], y[near]
        sub = scene.table.iloc[idx].reset_index(drop=True)
        mags = scene.magnitudes(optical_element)[idx]
        flux_e = ab_to_electrons(mags, optical_element)
        north, parity, scale, ra_c, dec_c = _local_orientation(projection, science_size)
        sky_e = sky_rate(optical_element, ra_c, dec_c, start.datetime, scale**2) if sky else 0.0
        # the detector's per-pixel arrays (counted with the ramp)
        t1 = clock()
        flat = model.flat(optical_element)
        for name in ("gain", "dark_rate", "pixel_response", "bias", "full_well", "linearity_coeffs", "read_noise"):
            getattr(model, name)
        arrays_s = clock() - t1
        # --- scene -> ideal rates (e-/s) on the science array
        sources_e = renderer.render(sub, x, y, flux_e, north_angle_deg=north, parity=parity, pixel_scale=scale)
    timings["render"] = timings.get("render", 0.0) + clock() - t0 - arrays_s

    t1 = clock() - arrays_s
    sci = model.science
    scene_e = np.zeros((n_total, n_total), dtype=np.float32)
    scene_e[sci] = sources_e + np.float32(sky_e)
    gain = model.gain
    rate_e = scene_e * flat + model.dark_rate * gain
    del scene_e, flat

    rng_cr = np.random.default_rng(cr_seq)
    hits = draw_cosmic_rays(model.pixel_response > 0, pattern.last_read, FRAME_TIME, rng_cr, rate=cosmic_ray_rate)
    row_seeds = ramp_seq.generate_state(n_total, dtype=np.uint32)
    resultants = sample_resultants(rate_e, gain, model.bias, model.full_well, model.linearity_coeffs,
                                   model.read_noise, table.as_list(), FRAME_TIME, row_seeds, hits)
    del rate_e
    add_dark_decay(resultants, *model.dark_decay, pattern)  # the signal after reset, in every pixel
    if model.first_read_transient is not None:  # WFI18: the first read's transient, its size drawn per exposure
        from romanflow.kernels.wfi18_transient import first_read_share, transient_signal

        a, tau_a, b, tau_b = model.first_read_transient
        scale = float(np.random.default_rng(seeds.spawn(1)[0]).uniform(0.6, 1.4))
        resultants[0] += np.float32(first_read_share(pattern)) * transient_signal(
            (scale * a, tau_a, scale * b, tau_b), resultants.shape[1:])
    timings["ramp"] = timings.get("ramp", 0.0) + clock() - t1

    t2 = clock()
    if correlated_noise:
        noise, amp33_noise = correlated_noise_resultants((n_total, n_total), pattern.n_reads,
                                                         model.correlated_noise, np.random.default_rng(corr_seq))
        resultants += noise
        del noise
    else:
        white_ref = np.float32(model.correlated_noise.white_ref) / np.sqrt(pattern.n_reads).astype(np.float32)
        amp33_noise = np.random.default_rng(corr_seq).standard_normal(
            (pattern.n_resultants, n_total, AMP33_WIDTH), dtype=np.float32) * white_ref[:, None, None]
    data = np.empty(resultants.shape, dtype=np.uint16)
    for k in range(resultants.shape[0]):  # in place, one resultant at a time (memory)
        np.rint(resultants[k], out=resultants[k])
        np.clip(resultants[k], 0, 65535, out=resultants[k])
        data[k] = resultants[k]
    del resultants
    border = np.ones((n_total, n_total), dtype=bool)
    border[sci] = False
    amp33_level = np.float32(np.median(model.bias[border]))
    amp33 = np.clip(np.rint(amp33_noise + amp33_level), 0, 65535).astype(np.uint16)
    del amp33_noise
    timings["noise"] = timings.get("noise", 0.0) + clock() - t2

    meta = {
        "exposure": {
            "type": "WFI_IMAGE",
            "start_time": start,
            "end_time": end,
            "nresultants": table.n_resultants,
            "frame_time": FRAME_TIME,
            "exposure_time": pattern.exposure_time,
            "effective_exposure_time": pattern.effective_exposure_time,
            "ma_table_name": table.name,
            "ma_table_number": table.number,
            "ma_table_id": f"SCI{table.number:04d}",
            "read_pattern": table.as_list(),
            "truncated": False,
        },
        "instrument": {"name": "WFI", "detector": detector, "optical_element": optical_element},
        "pointing": geometry.pointing_meta(pointing),
        "wcsinfo": geometry.wcsinfo_meta(detector, pointing, science_size),
        "observation": ids.meta(),
        "velocity_aberration": {"ra_reference": float(pointing.ra_ref), "dec_reference": float(pointing.dec_ref),
                                "scale_factor": float(pointing.va_scale)},
        "visit": {"start_time": start, "nexposures": 1},
    }
    exposure = RampExposure(data=data, amp33=amp33, meta=meta)

    # --- truth
    on = projection.contains(x, y)
    sources = pd.DataFrame({
        "source_id": sub["source_id"].to_numpy(np.int64),
        "type": sub["type"].astype(str).to_numpy(),
        "ra": ra[idx],
        "dec": dec[idx],
        "x": x,
        "y": y,
        "flux_e": flux_e,
        "flux_dn": flux_e / model.nominal_gain,
        "mag": mags,
        "on_detector": on,
    })
    # What an ideal, flat-fielded L2 shows: DN/s of a detector at the nominal gain everywhere.
    rate_dn = ((sources_e + np.float32(sky_e)) / np.float32(model.nominal_gain)).astype(np.float32)
    cosmic_rays = pd.DataFrame({
        "x": hits["x"] - N_BORDER,
        "y": hits["y"] - N_BORDER,
        "read": hits["read"],
        "amplitude_e": hits["amplitude_e"],
    })
    return DetectorSimulation(exposure, sources, rate_dn, cosmic_rays, true_pointing,
                              extra={"sky_e": sky_e, "sources_e": sources_e})


def _sources_within(projection, ra, dec, science_size: int, margin: float) -> np.ndarray:
    """Indices (ascending) of the positions (deg) that may fall within ``margin`` pixels of the science array.

    A cone around the array's centre that holds the array grown by ``margin`` pixels on every side,
    with room to spare: only positions that cannot be near the array are left out.
    """
    edge = np.linspace(-margin - 1.0, science_size + margin, 9)
    box_x = np.concatenate([edge, edge, np.full(9, edge[0]), np.full(9, edge[-1])])
    box_y = np.concatenate([np.full(9, edge[0]), np.full(9, edge[-1]), edge, edge])
    c = (science_size - 1) / 2.0
    (ra0,), (dec0,) = projection.pixel_to_world(np.array([c]), np.array([c]))
    box_ra, box_dec = projection.pixel_to_world(box_x, box_y)
    radius = 1.02 * angular_separation(ra0, dec0, box_ra, box_dec).max() + 1.0 / 3600.0
    return np.nonzero(angular_separation(ra0, dec0, ra, dec) <= radius)[0]


def _field_radius(pointing: geometry.Pointing, detectors, science_size) -> float:
    """Radius (deg) around the pointing that covers the detectors plus the PSF wings."""
    corners = np.concatenate([geometry.DetectorProjection(d, pointing, science_size).footprint()
                              for d in detectors])
    ra0, dec0 = math.radians(pointing.ra_ref), math.radians(pointing.dec_ref)
    ra, dec = np.radians(corners[:, 0]), np.radians(corners[:, 1])
    cos_sep = np.sin(dec0) * np.sin(dec) + np.cos(dec0) * np.cos(dec) * np.cos(ra - ra0)
    return float(np.degrees(np.arccos(np.clip(cos_sep, -1, 1))).max()) + (WING_SIZE * PIXEL_SCALE / 3600.0)


def write_detector_products(sim: DetectorSimulation, commanded: geometry.Pointing, l1_path, truth_dir):
    """Write a simulated detector's L1 file and its truth beside it, each atomically.

    Truth files (in ``truth_dir``, named after the L1 file without ``_uncal.asdf``):
    ``_sources.parquet``, ``_cosmic_rays.parquet``, ``_rate.npy`` (noiseless rate,
    DN/s) and ``_wcs.asdf`` (true WCS, true and commanded pointings).

    Returns
    -------
    l1_path : Path
    truth : dict
        ``sources``, ``cosmic_rays``, ``rate``, ``wcs`` paths.
    """
    import asdf

    from romanflow.exposure import get_meta
    from romanflow.formats.asdf_io import atomic_path, write_l1

    l1_path, truth_dir = Path(l1_path), Path(truth_dir)
    write_l1(sim.exposure, l1_path)
    stem = l1_path.name.removesuffix("_uncal.asdf")
    paths = {
        "sources": truth_dir / f"{stem}_sources.parquet",
        "cosmic_rays": truth_dir / f"{stem}_cosmic_rays.parquet",
        "rate": truth_dir / f"{stem}_rate.npy",
        "wcs": truth_dir / f"{stem}_wcs.asdf",
    }
    with atomic_path(paths["sources"]) as tmp:
        sim.sources.to_parquet(tmp, index=False)
    with atomic_path(paths["cosmic_rays"]) as tmp:
        sim.cosmic_rays.to_parquet(tmp, index=False)
    with atomic_path(paths["rate"]) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, sim.rate_dn)
    detector = str(get_meta(sim.exposure.meta, "instrument.detector"))
    science_size = sim.rate_dn.shape[0]
    with atomic_path(paths["wcs"]) as tmp:
        tree = {
            "wcs": geometry.detector_gwcs(detector, sim.true_pointing, science_size),
            "pointing": dataclasses.asdict(sim.true_pointing),
            "commanded_pointing": dataclasses.asdict(commanded),
            "detector": detector,
            "science_size": int(science_size),
        }
        asdf.AsdfFile(tree).write_to(tmp)
    return l1_path, paths


def simulate(scene: Scene | None = None, detectors=("WFI01",), optical_element: str = "F158", *,
             n_sources: int | None = None, ma_table: int = 4, pointing=(270.0, 66.0, 0.0),
             pointing_error=(0.0, 0.0, 0.0), science_size: int = N_PIX_SCIENCE, seed: int = 0,
             output_dir=".", start_time=DEFAULT_START_TIME, ids: ObservationIds = ObservationIds(),
             cosmic_ray_rate: float = COSMIC_RAY_RATE, progress=None, overwrite: bool = False) -> dict:
    """Simulate L1 files of one exposure and write them with their truth.

    Parameters
    ----------
    scene : Scene, optional
        Sources; by default a random field (:func:`random_scene`, seeded by ``seed``).
    detectors : sequence of str or int
        Detectors to simulate.
    optical_element : str
        Imaging filter.
    n_sources : int, optional
        For a random field: mean number of sources per detector area (full-size
        detector equivalent density); default about 8,500 (150 per arcmin²).
    ma_table : int
        MA table number.
    pointing : (ra, dec, pa) or Pointing
        Commanded pointing: WFI centre (deg) and position angle of +V3 (deg).
    pointing_error : (dra_arcsec, ddec_arcsec, droll_deg)
        Offset of the true pointing from the commanded one.
    science_size : int
        4088 (full) or a smaller central patch such as 248.
    seed : int
        Seed of the scene (when generated) and of every random draw.
    output_dir : str or Path
        Where files go (truth in ``output_dir/truth``).
    start_time : str or Time
        Exposure start (UTC).
    ids : ObservationIds
        Identifiers (file names, ``meta.observation``).
    cosmic_ray_rate : float
        Cosmic-ray hits per cm² per second.
    progress : callable, optional
        Called with the detector name after each detector.
    overwrite : bool
        Replace the files of a simulation already in ``output_dir`` (default False:
        any existing output is refused before any work).

    Parameters are checked, and every output path with them, before anything is
    written; if the simulation then fails, the files it created are removed (files
    it replaced under ``overwrite`` stay replaced).

    Returns
    -------
    dict
        ``{'l1': [paths], 'sources': [...], 'rate': [...], 'cosmic_rays': [...],
        'wcs': [...], 'gaia': path, 'scene': path}``.
    """
    from romanflow.formats.asdf_io import atomic_path

    optical_element = check_filter(optical_element)
    detectors = [detector_name(d) for d in (detectors if not isinstance(detectors, (str, int)) else [detectors])]
    check_simulation_parameters(n_sources=n_sources, pointing=pointing, pointing_error=pointing_error,
                                science_size=science_size, seed=seed, start_time=start_time)
    if isinstance(pointing, geometry.Pointing):
        commanded = pointing
    else:
        commanded = geometry.pointing_for(*pointing)
    out = Path(output_dir)
    truth_dir = out / "truth"
    planned = simulation_outputs(detectors, out, ids)
    check_simulation_outputs(planned, overwrite=overwrite)
    existing = {path for paths in planned.values() for path in paths if path.exists()}
    root = ids.root
    written: list[Path] = []
    try:
        if scene is None:
            radius = _field_radius(commanded, detectors, science_size)
            full_area_arcmin2 = (N_PIX_SCIENCE * PIXEL_SCALE / 60.0) ** 2
            density = None if n_sources is None else n_sources / full_area_arcmin2
            scene = random_scene(commanded.ra_ref, commanded.dec_ref, radius, density_per_arcmin2=density,
                                 seed=seed)
        result = {"l1": [], "sources": [], "rate": [], "cosmic_rays": [], "wcs": []}
        scene_path = truth_dir / f"{root}_scene.parquet"
        with atomic_path(scene_path) as tmp:
            scene.table.to_parquet(tmp, index=False)
        written.append(scene_path)
        result["scene"] = scene_path
        gaia_path = truth_dir / f"{root}_gaia.parquet"
        with atomic_path(gaia_path) as tmp:
            gaia_catalog(scene, seed=seed).to_parquet(tmp, index=False)
        written.append(gaia_path)
        result["gaia"] = gaia_path
        for det in detectors:
            sim = simulate_detector(scene, det, optical_element, ma_table_number=ma_table, pointing=commanded,
                                    pointing_error=pointing_error, science_size=science_size, seed=seed,
                                    start_time=start_time, ids=ids, cosmic_ray_rate=cosmic_ray_rate)
            l1_target = out / f"{root}_{det.lower()}_uncal.asdf"
            written.extend(planned[det])
            l1_path, paths = write_detector_products(sim, commanded, l1_target, truth_dir)
            result["l1"].append(l1_path)
            for key, path in paths.items():
                result[key].append(path)
            del sim
            if progress is not None:
                progress(det)
    except BaseException:
        for path in written:  # a failed simulation leaves none of the files it created behind
            if path in existing:
                continue
            try:
                path.unlink()
            except OSError:
                pass
        raise
    return result


def simulation_outputs(detectors, output_dir, ids: ObservationIds = ObservationIds()) -> dict:
    """The files :func:`simulate` writes: ``{'WFInn': [L1, its truth files...], 'truth': [scene, gaia]}``."""
    out = Path(output_dir)
    truth_dir = out / "truth"
    root = ids.root
    planned = {}
    for det in detectors:
        stem = f"{root}_{detector_name(det).lower()}"
        planned[detector_name(det)] = [out / f"{stem}_uncal.asdf",
                                       *(truth_dir / f"{stem}{suffix}" for suffix in
                                         ("_sources.parquet", "_cosmic_rays.parquet", "_rate.npy", "_wcs.asdf"))]
    planned["truth"] = [truth_dir / f"{root}_scene.parquet", truth_dir / f"{root}_gaia.parquet"]
    return planned


def check_simulation_outputs(planned: dict, *, overwrite: bool = False) -> None:
    """Check every planned output can be written (see :func:`romanflow.formats.asdf_io.check_output_path`)."""
    from romanflow.formats.asdf_io import check_output_path

    for paths in planned.values():
        for path in paths:
            check_output_path(path, overwrite=overwrite)


def check_simulation_parameters(*, n_sources=None, pointing=(270.0, 66.0, 0.0), pointing_error=(0.0, 0.0, 0.0),
                                science_size: int = N_PIX_SCIENCE, seed: int = 0, start_time=DEFAULT_START_TIME):
    """Raise :class:`ParameterError` for a parameter :func:`simulate` cannot use.

    ``pointing``: finite RA in [0, 360), Dec in [-90, 90] and position angle (deg);
    ``pointing_error``: three finite numbers; ``n_sources``: an integer >= 0;
    ``seed``: an integer >= 0; ``start_time``: an ISO UTC time.
    """
    from astropy.time import Time

    if not isinstance(pointing, geometry.Pointing):
        try:
            ra, dec, pa = (float(v) for v in pointing)
        except (TypeError, ValueError):
            raise ParameterError("pointing", pointing, "expected (ra, dec, pa) in degrees") from None
        if not (math.isfinite(ra) and 0.0 <= ra < 360.0):
            raise ParameterError("ra", ra, "must be a finite angle in [0, 360) degrees")
        if not (math.isfinite(dec) and -90.0 <= dec <= 90.0):
            raise ParameterError("dec", dec, "must be a finite angle in [-90, 90] degrees")
        if not math.isfinite(pa):
            raise ParameterError("pa", pa, "must be a finite angle in degrees")
    try:
        error = tuple(float(v) for v in pointing_error)
    except (TypeError, ValueError):
        error = ()
    if len(error) != 3 or not all(math.isfinite(v) for v in error):
        raise ParameterError("pointing_error", pointing_error,
                             "expected three finite numbers: (dra_arcsec, ddec_arcsec, droll_deg)")
    if n_sources is not None and (isinstance(n_sources, bool) or not isinstance(n_sources, (int, np.integer))
                                  or n_sources < 0):
        raise ParameterError("n_sources", n_sources, "must be an integer >= 0")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError("seed", seed, "must be an integer >= 0")
    total_size(science_size)
    if not isinstance(start_time, Time):
        try:
            Time(start_time, scale="utc")
        except (TypeError, ValueError):
            raise ParameterError("start_time", start_time, "expected an ISO UTC time such as "
                                                           f"{DEFAULT_START_TIME}") from None
