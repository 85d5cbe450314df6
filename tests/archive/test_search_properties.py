"""Cone, polygon, time and band searches equal a brute-force computation over the same footprints.

The brute force here shares no code with the archive: containment by the sign of each edge's plane
(the footprints are convex), distances by sampling every edge densely. Sampling leaves a band of
width ``half the sample spacing`` where it cannot decide; the archive must return every footprint the
brute force finds and none it excludes, and footprints in that band (rare) are not judged.
Footprints are real WFI detector outlines around both poles, across RA 0/360 and over the sphere.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from romanflow.archive.synthetic import SURVEY_START_MJD, cal_record, pointing_footprints

SAMPLES = 48  # points per edge for the brute force


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _offset(centre, distance_deg, bearing_deg):
    """Point at ``distance`` along ``bearing`` from ``centre`` (unit vectors)."""
    helper = np.array([0.0, 0.0, 1.0]) if abs(centre[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    east = np.cross(helper, centre)
    east /= np.linalg.norm(east)
    north = np.cross(centre, east)
    r, b = np.radians(distance_deg), np.radians(bearing_deg)
    return np.cos(r) * centre + np.sin(r) * (np.cos(b) * north + np.sin(b) * east)


def _to_radec(v):
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), float(np.degrees(np.arcsin(np.clip(v[2], -1, 1))))


def _edge_samples(poly):
    """Points (n*SAMPLES, 3) along the great-circle edges, and the largest spacing (rad)."""
    pts, spacing = [], 0.0
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        omega = np.arccos(np.clip(a @ b, -1, 1))
        t = np.linspace(0, 1, SAMPLES, endpoint=False)[:, None]
        pts.append((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega))
        spacing = max(spacing, omega / SAMPLES)
    return np.vstack(pts), spacing


def _inside_convex(poly, pts):
    """Points inside a convex polygon: on the inner side of every edge's plane (either orientation)."""
    normals = np.cross(poly, np.roll(poly, -1, axis=0))
    s = pts @ normals.T
    return np.all(s >= 0, axis=1) | np.all(s <= 0, axis=1)


def brute_cone(polys, ra, dec, radius):
    """(sure matches, undecided) indices for a cone (deg)."""
    p = _unit(ra, dec)
    sure, unsure = set(), set()
    r = np.radians(radius)
    for i, poly in enumerate(polys):
        if np.arccos(np.clip(poly @ p, -1, 1)).min() > r + np.radians(1.0):  # far away (footprints < 1 deg)
            continue
        pts, spacing = _edge_samples(poly)
        d = np.arccos(np.clip(pts @ p, -1, 1)).min()
        if _inside_convex(poly, p[None])[0] or d <= r:
            sure.add(i)
        elif d - spacing <= r + 1e-9:
            unsure.add(i)
    return sure, unsure


def brute_polygon(polys, query):
    """(sure matches, undecided) indices for a convex query polygon (unit vectors)."""
    q_pts, q_spacing = _edge_samples(query)
    centre = query.sum(axis=0)
    centre /= np.linalg.norm(centre)
    q_radius = np.arccos(np.clip(query @ centre, -1, 1)).max()
    sure, unsure = set(), set()
    for i, poly in enumerate(polys):
        if np.arccos(np.clip(poly @ centre, -1, 1)).min() > q_radius + np.radians(1.0):
            continue
        pts, spacing = _edge_samples(poly)
        if _inside_convex(query, pts).any() or _inside_convex(poly, q_pts).any():
            sure.add(i)
            continue
        gap = np.arccos(np.clip(pts @ q_pts.T, -1, 1)).min()
        if gap <= spacing + q_spacing + 1e-9:
            unsure.add(i)
    return sure, unsure


def _survey():
    """Pointings over the sphere and clustered at both poles and across RA 0, 18 detectors each."""
    rng = np.random.default_rng(11)
    ra = np.concatenate([rng.uniform(0, 360, 14), rng.uniform(0, 360, 6), rng.uniform(0, 360, 6),
                         rng.uniform(-1.0, 1.0, 8) % 360.0])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 14))), rng.uniform(89.0, 90.0, 6),
                          rng.uniform(-90.0, -89.0, 6), rng.uniform(-1.0, 1.0, 8)])
    pa = rng.uniform(0, 360, len(ra))
    feet = pointing_footprints(ra, dec, pa)
    bands = ("F158", "F106", "F213")
    records, polys = [], []
    for i in range(len(ra)):
        t0 = SURVEY_START_MJD + 10.0 * i
        for d in range(18):
            det = f"WFI{d + 1:02d}"
            obs_id = f"p{i:03d}_{det.lower()}_cal"
            rec = cal_record(obs_id, feet[i, d], detector=det, band=bands[i % 3], t_min=t0)
            records.append((rec, {"uri": f"s/{obs_id}.asdf", "sha256": f"{i:032d}{d:032d}", "size": 1, "mtime_ns": 0}))
            polys.append(feet[i, d])
    return records, np.array(polys)


RECORDS, POLYS = _survey()
IDS = [r.obs_id for r, _ in RECORDS]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def survey_archive(request, tmp_path_factory):
    """The survey registered once per backend for this module (the tests only read it)."""
    import sys

    from romanflow.archive import Archive

    root = tmp_path_factory.mktemp("survey")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'archive.db'}"
    else:
        request.getfixturevalue("postgres_url")
        url = sys.modules["romanflow_tests_postgres"].new_database()
    arc = Archive.open(url, root=root)
    report = arc.ingest_records(RECORDS)
    assert len(report.registered) == len(RECORDS)
    yield arc
    arc.close()


def _anchor(data):
    """A point near the footprints (a vertex of one, moved a little) or anywhere on the sphere."""
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(POLYS) - 1))
        k = data.draw(st.integers(0, 3))
        return _offset(POLYS[i, k], data.draw(st.floats(0, 0.3)), data.draw(st.floats(0, 360)))
    ra = data.draw(st.floats(0, 360, exclude_max=True))
    dec = data.draw(st.sampled_from([90.0, -90.0, 89.95, -89.95, 0.0])) if data.draw(st.booleans()) else \
        data.draw(st.floats(-90, 90))
    return _unit(ra, dec)


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(data=st.data())
def test_cone_search_equals_brute_force(survey_archive, data):
    centre = _anchor(data)
    ra, dec = _to_radec(centre)
    radius = 10 ** data.draw(st.floats(np.log10(1 / 3600), np.log10(2.0)))
    found = set(survey_archive.search(ra=ra, dec=dec, radius=radius)["obs_id"])
    sure, unsure = brute_cone(POLYS, ra, dec, radius)
    assert {IDS[i] for i in sure} <= found
    assert found - {IDS[i] for i in sure} <= {IDS[i] for i in unsure}


@SETTINGS
@given(data=st.data())
def test_polygon_search_equals_brute_force(survey_archive, data):
    centre = _anchor(data)
    n = data.draw(st.integers(3, 7))
    radius = 10 ** data.draw(st.floats(np.log10(0.005), np.log10(2.0)))
    start = data.draw(st.floats(0, 360))
    bearings = start + np.sort(np.array([data.draw(st.floats(0, 1)) for _ in range(n)])) * 360 * (n - 1) / n
    if np.diff(bearings).min() < 2.0:
        bearings = start + np.arange(n) * 360.0 / n
    query = np.array([_offset(centre, radius, b) for b in bearings])
    vertices = [_to_radec(v) for v in query]
    found = set(survey_archive.search(polygon=vertices)["obs_id"])
    sure, unsure = brute_polygon(POLYS, query)
    assert {IDS[i] for i in sure} <= found
    assert found - {IDS[i] for i in sure} <= {IDS[i] for i in unsure}


@SETTINGS
@given(t0=st.floats(SURVEY_START_MJD - 5, SURVEY_START_MJD + 350), width=st.floats(0, 60),
       band=st.sampled_from(["F158", "F106", "F213", "F062"]), detector=st.sampled_from([None, "WFI01", "WFI18"]))
def test_time_band_detector_equal_brute_force(survey_archive, t0, width, band, detector):
    found = set(survey_archive.search(time_range=(t0, t0 + width), band=band, detector=detector)["obs_id"])
    expected = {r.obs_id for r, _ in RECORDS
                if r.columns["t_min"] <= t0 + width and r.columns["t_max"] >= t0
                and r.columns["optical_element"] == band and (detector is None or r.columns["detector"] == detector)}
    assert found == expected


def test_cone_across_ra_zero_and_at_the_pole(survey_archive):
    """Named cases: a cone on RA=0 finds footprints on both sides; a cone on the pole finds those around it."""
    for ra, dec, radius in ((0.0, 0.0, 1.5), (359.99, 0.0, 1.5), (0.0, 90.0, 1.2), (123.0, -90.0, 1.2)):
        found = set(survey_archive.search(ra=ra, dec=dec, radius=radius)["obs_id"])
        sure, unsure = brute_cone(POLYS, ra, dec, radius)
        assert len(sure) > 18
        assert {IDS[i] for i in sure} <= found <= {IDS[i] for i in sure | unsure}
    near_zero = survey_archive.search(ra=0.0, dec=0.0, radius=1.5)
    assert (np.asarray(near_zero["s_ra"]) > 300).any() and (np.asarray(near_zero["s_ra"]) < 60).any()


def test_maxrec_and_combined_criteria(survey_archive):
    everything = survey_archive.search(ra=0.0, dec=0.0, radius=1.5)
    assert len(survey_archive.search(ra=0.0, dec=0.0, radius=1.5, maxrec=3)) == 3
    combined = survey_archive.search(ra=0.0, dec=0.0, radius=1.5, band="F158", detector=["WFI01", "WFI02"])
    expected = [r["obs_id"] for r in everything if r["optical_element"] == "F158" and r["detector"] in ("WFI01", "WFI02")]
    assert sorted(combined["obs_id"]) == sorted(expected)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(dec=st.floats(-88.5, 88.5), s_max=st.floats(1e-4, 60.0), frac=st.floats(0.0, 1.0),
       bearing=st.floats(0.0, 360.0))
def test_ra_stretch_bounds_every_pair_within_reach(dec, s_max, frac, bearing):
    """The linear RA bound the SQL pre-filter uses holds for every separation up to its s_max."""
    from romanflow.archive.core import ra_stretch

    k = ra_stretch(dec, s_max)
    if k is None:
        return
    sep = frac * s_max
    other = _offset(_unit(10.0, dec), sep, bearing)
    ra2, _ = _to_radec(other)
    d_ra = abs((ra2 - 10.0 + 180.0) % 360.0 - 180.0)
    assert d_ra <= k * sep + 1e-9
