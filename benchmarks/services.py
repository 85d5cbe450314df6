"""The data services under load on loopback: SODA cutouts against astrocut, SIA and cone-search latency on
large tables, and the server's memory over many requests.

Usage: ``.venv/bin/python -m benchmarks.services [--mosaic 5000] [--cutout 200] [--requests 300]
[--obscore-rows 1000000] [--catalog-rows 10000000] [--memory-requests 10000] [--work DIR]``

* cutouts: ``--cutout``-pixel squares (ASDF, the service's default format) at random places in one
  ``--mosaic``-pixel L3 mosaic, through ``romanflow serve`` (a separate process) with 1, 8 and 32
  concurrent clients: p50/p99 latency and throughput. Side by side, astrocut's ``ASDFCutout`` cuts the same
  squares from the same file and writes each as ASDF; target: the service >= 5x faster per cutout.
* SIA v2 queries (POS CIRCLE 0.05 deg) on an ObsCore table of ``--obscore-rows`` products, and cone
  searches (SR 10 arcsec) on a catalog of ``--catalog-rows`` rows: p99 < 100 ms each (1 client), with the
  database file read once into the OS page cache first (a running service's state; cold, the first
  queries wait on the disk).
* memory: the server's resident size sampled over ``--memory-requests`` cutout requests (8 clients); flat
  when the last sample exceeds the one after warm-up by < 10 % (and < 100 MB).

Large tables are registered through the archive's own ``ingest_records`` with synthetic product records
(footprints of detector size scattered over a 20x20 deg field; catalog rows uniform over the same field).
The client runs in this process on the same machine (loopback), so client and server share the CPUs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

FIELD_RA, FIELD_DEC, FIELD_SIZE = 60.0, -30.0, 20.0  # synthetic large tables: a 20x20 deg field


def _make_mosaic(path: Path, size: int) -> tuple:
    """An L3 file of ``size``^2 pixels on a sky cell's grid; returns its astropy WCS."""
    from romanflow.mosaic.resample import MosaicProduct, write_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs

    cell = skycell_containing(150.1, 2.2)[0]
    full = skycell_wcs(cell)
    n = full.array_shape[0]
    x0 = max(0, (n - size) // 2)
    wcs = cutout_wcs(full, x0, x0, size, size)
    rng = np.random.default_rng(0)
    shape = (size, size)
    data = rng.normal(0.0, 0.01, shape).astype(np.float32)
    ones = np.ones(shape, np.float32)  # one array for every auxiliary plane keeps the set-up's memory low
    arrays = {"data": data, "err": ones, "weight": ones, "context": np.ones((1, *shape), np.uint32),
              "var_rnoise": ones, "var_poisson": ones, "var_flat": ones, "exposure_time": ones}
    write_mosaic(MosaicProduct(arrays, wcs, []), path, skycell=cell, optical_element="F158")
    return wcs


def _synthetic_records(n_products: int, n_sources: int, root: Path, seed: int = 1):
    """ProductRecords of detector-sized L2 footprints and one catalog of ``n_sources`` rows."""
    from romanflow.archive.products import KINDS, ProductRecord, footprint_columns
    from romanflow.archive.sphere import xyz

    rng = np.random.default_rng(seed)
    half = 0.0625  # deg: a WFI detector is ~0.125 deg on a side
    ra_c = FIELD_RA + rng.uniform(-FIELD_SIZE / 2, FIELD_SIZE / 2, n_products) / np.cos(np.radians(FIELD_DEC))
    dec_c = FIELD_DEC + rng.uniform(-FIELD_SIZE / 2, FIELD_SIZE / 2, n_products)
    level, calib, dptype, subtype = KINDS["cal"]
    for k in range(n_products):
        cosd = np.cos(np.radians(dec_c[k]))
        ra = ra_c[k] + np.array([-half, half, half, -half]) / cosd
        dec = dec_c[k] + np.array([-half, -half, half, half])
        v = xyz(ra, dec)
        obs_id = f"synthetic_{k:08d}_cal"
        c = {"obs_id": obs_id, "obs_publisher_did": f"ivo://romanflow/{obs_id}", "obs_collection": "romanflow",
             "dataproduct_type": dptype, "dataproduct_subtype": subtype, "calib_level": calib,
             "product_level": level, "product_kind": "cal", "facility_name": "Roman", "instrument_name": "WFI",
             "optical_element": "F158", "em_min": 1.38e-6, "em_max": 1.774e-6, "detector": "WFI01",
             "t_min": 61000.0 + k * 1e-3, "t_max": 61000.0 + k * 1e-3 + 1.6e-3, "t_exptime": 139.8,
             "access_url": f"files/{obs_id}", "access_format": "application/asdf", "access_estsize": 1,
             "s_resolution": 0.11, "s_xel1": 4088, "s_xel2": 4088, "flags": None}
        c.update(footprint_columns(v))
        yield (ProductRecord(obs_id, "cal", c, v, []),
               {"uri": f"synthetic/{obs_id}.asdf", "sha256": f"{k:064x}", "size": 1, "mtime_ns": 0})
    if n_sources:
        def sources(n=n_sources):
            r = np.random.default_rng(seed + 1)
            dec = FIELD_DEC + r.uniform(-FIELD_SIZE / 2, FIELD_SIZE / 2, n)
            ra = FIELD_RA + r.uniform(-FIELD_SIZE / 2, FIELD_SIZE / 2, n) / np.cos(np.radians(FIELD_DEC))
            return ra, dec, {"psf_f158_flux": r.uniform(10, 1000, n)}

        obs_id = "synthetic_field_cat"
        level, calib, dptype, subtype = KINDS["catalog"]
        c = {"obs_id": obs_id, "obs_publisher_did": f"ivo://romanflow/{obs_id}", "obs_collection": "romanflow",
             "dataproduct_type": dptype, "dataproduct_subtype": subtype, "calib_level": calib,
             "product_level": level, "product_kind": "catalog", "access_url": f"files/{obs_id}",
             "access_format": "application/vnd.apache.parquet", "flags": None}
        c.update(footprint_columns(None))
        yield (ProductRecord(obs_id, "catalog", c, None, [], {}, sources),
               {"uri": f"synthetic/{obs_id}.parquet", "sha256": "f" * 64, "size": 1, "mtime_ns": 0})


class Server:
    """``romanflow serve`` in a child process."""

    def __init__(self, db_url: str, log: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "romanflow.cli", "serve", "--db", db_url, "--port", "0",
                                      "--access-log", str(log), "--max-rows", "100000"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip().rstrip("/")
        if not self.url.startswith("http"):
            raise RuntimeError(f"server did not start: {self.proc.stderr.read()[-2000:]}")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _load(urls_params: list, concurrency: int, check) -> tuple[np.ndarray, float, int]:
    """Run the requests with ``concurrency`` client threads; (latencies s, wall s, failures)."""
    import requests

    lat = np.zeros(len(urls_params))
    failures = [0]
    nxt = [0]
    lock = threading.Lock()

    def worker():
        session = requests.Session()
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(urls_params):
                return
            url, params = urls_params[i]
            t0 = time.perf_counter()
            r = session.get(url, params=params, timeout=120)
            ok = r.status_code == 200 and check(r)
            lat[i] = time.perf_counter() - t0
            if not ok:
                with lock:
                    failures[0] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0, failures[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mosaic", type=int, default=5000, help="mosaic side (pixels)")
    parser.add_argument("--cutout", type=int, default=200, help="cutout side (pixels)")
    parser.add_argument("--requests", type=int, default=300, help="cutout requests per concurrency level")
    parser.add_argument("--astrocut", type=int, default=20, help="cutouts made with astrocut")
    parser.add_argument("--obscore-rows", type=int, default=1_000_000, help="products in the ObsCore table")
    parser.add_argument("--catalog-rows", type=int, default=10_000_000, help="rows of the catalog")
    parser.add_argument("--queries", type=int, default=300, help="SIA and cone queries each")
    parser.add_argument("--memory-requests", type=int, default=10_000, help="requests of the memory check")
    parser.add_argument("--work", default="benchmark_output/services", help="work folder (rebuilt)")
    parser.add_argument("--reuse", action="store_true", help="keep the work folder's mosaic and tables")
    parser.add_argument("--phases", default="cutouts,queries,memory", help="which parts to run")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))

    from astropy.coordinates import SkyCoord

    from romanflow.archive import Archive

    from benchmarks.environment import header, verdict

    header("services")
    work = Path(args.work)
    mosaic = work / "l3" / "bench_f158_coadd.asdf"
    db = f"sqlite:///{(work / 'archive.db').resolve()}"
    rows, misses = [], []
    if args.reuse and mosaic.is_file() and (work / "archive.db").is_file():
        from romanflow.services.cutout import open_product

        prod = open_product(mosaic)
        from astropy.wcs import WCS

        wcs = WCS(prod.wcs.to_fits_sip(bounding_box=((-0.5, prod.shape[1] - 0.5), (-0.5, prod.shape[0] - 0.5)),
                                       max_pix_error=0.01, degree=1))
        args.mosaic = prod.shape[0]
        arc = Archive.open(db, create=False)
        counts = arc.counts()
        args.obscore_rows, args.catalog_rows = counts["obscore"] - 2, counts["catalog_sources"]  # - mosaic, catalog
        arc.close()
        print(f"set-up: reusing {work} ({args.mosaic}^2 mosaic, {args.obscore_rows} products, "
              f"{args.catalog_rows} catalog rows)", flush=True)
    else:
        if work.exists():
            shutil.rmtree(work)
        (work / "l3").mkdir(parents=True)
        t0 = time.perf_counter()
        wcs = _make_mosaic(mosaic, args.mosaic)
        t_mosaic = time.perf_counter() - t0
        arc = Archive.open(db)
        arc.ingest([work / "l3"])
        t0 = time.perf_counter()
        batch = []
        for rec in _synthetic_records(args.obscore_rows, args.catalog_rows, work):
            batch.append(rec)
            if len(batch) >= 20_000:
                arc.ingest_records(batch)
                batch = []
        if batch:
            arc.ingest_records(batch)
        t_tables = time.perf_counter() - t0
        arc.close()
        print(f"set-up: mosaic {args.mosaic}^2 written in {t_mosaic:.0f} s; {args.obscore_rows} products and "
              f"{args.catalog_rows} catalog rows registered in {t_tables:.0f} s", flush=True)

    rng = np.random.default_rng(7)
    half = args.cutout / 2
    radius_deg = half * 0.055 / 3600.0  # circle inscribed in a cutout-side square
    n_total = 3 * args.requests
    px = rng.uniform(half + 2, args.mosaic - half - 2, (n_total, 2))
    ra, dec = wcs.pixel_to_world_values(px[:, 0], px[:, 1])
    server = Server(db, work / "access.log")
    try:
        import requests

        base = server.url
        # warm-up (file opened, code paths loaded)
        for k in range(5):
            requests.get(f"{base}/soda/sync", params={"ID": "bench_f158_coadd", "CIRCLE": f"{ra[k]} {dec[k]} "
                                                       f"{radius_deg}"}, timeout=120)

        def is_asdf(r):
            return r.content[:5] == b"#ASDF"

        per_cutout = astro = ratio = None
        samples = []
        if "cutouts" in phases:
            for level, conc in enumerate((1, 8, 32)):
                sl = slice(level * args.requests, (level + 1) * args.requests)
                reqs = [(f"{base}/soda/sync", {"ID": "bench_f158_coadd", "CIRCLE": f"{a} {d} {radius_deg}"})
                        for a, d in zip(ra[sl], dec[sl])]
                lat, wall, fail = _load(reqs, conc, is_asdf)
                rows.append((f"cutout {args.cutout}^2 ASDF, {conc:2d} clients", np.percentile(lat, 50) * 1e3,
                             np.percentile(lat, 99) * 1e3, len(reqs) / wall, fail))
                if conc == 1:
                    per_cutout = float(np.median(lat))
                if fail:
                    misses.append(f"{fail} failed cutout requests at {conc} clients")

            # astrocut on the same file, same places, ASDF written per cutout
            from astrocut import ASDFCutout

            out = work / "astrocut"
            out.mkdir(exist_ok=True)
            times = []
            for k in range(args.astrocut):
                c = SkyCoord(ra[k], dec[k], unit="deg")
                t0 = time.perf_counter()
                cut = ASDFCutout([str(mosaic)], c, cutout_size=args.cutout)
                cut.write_as_asdf(output_dir=out)
                times.append(time.perf_counter() - t0)
            astro = float(np.median(times))
            rows.append((f"astrocut ASDFCutout {args.cutout}^2 + ASDF file", astro * 1e3, np.percentile(times, 99) * 1e3,
                         1.0 / astro, 0))
            ratio = astro / per_cutout
            if ratio < 5.0:
                misses.append(f"service only {ratio:.1f}x faster than astrocut per cutout (target >= 5x)")

        if "queries" in phases:
            # SIA v2 on the ObsCore table, cone search on the catalog
            def ok_vot(r):
                return b'value="ERROR"' not in r.content

            # the database file read once into the OS page cache, as a service's would be after running a
            # while (2.7 GB at 1e6 products and 1e7 catalog rows): cold, the first queries wait on the disk
            t0, size = time.perf_counter(), 0
            for part in sorted(work.glob("archive.db*")):
                with open(part, "rb") as fh:
                    while chunk := fh.read(1 << 24):
                        size += len(chunk)
            print(f"database files read into the page cache: {size / 2**30:.2f} GiB in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            qra = FIELD_RA + rng.uniform(-8, 8, args.queries) / np.cos(np.radians(FIELD_DEC))
            qdec = FIELD_DEC + rng.uniform(-8, 8, args.queries)
            sia = [(f"{base}/sia/query", {"POS": f"CIRCLE {a} {d} 0.05", "MAXREC": 1000}) for a, d in zip(qra, qdec)]
            lat, wall, fail = _load(sia, 1, ok_vot)
            rows.append((f"SIA v2 POS CIRCLE 0.05 deg, {args.obscore_rows} products", np.percentile(lat, 50) * 1e3,
                         np.percentile(lat, 99) * 1e3, len(sia) / wall, fail))
            if np.percentile(lat, 99) > 0.1 or fail:
                misses.append(f"SIA p99 {np.percentile(lat, 99) * 1e3:.0f} ms (target < 100 ms), {fail} failures")
            if args.catalog_rows:
                cone = [(f"{base}/scs/synthetic_field_cat", {"RA": a, "DEC": d, "SR": 10 / 3600}) for a, d in zip(qra, qdec)]
                lat, wall, fail = _load(cone, 1, ok_vot)
                rows.append((f"cone search SR 10\", {args.catalog_rows} rows", np.percentile(lat, 50) * 1e3,
                             np.percentile(lat, 99) * 1e3, len(cone) / wall, fail))
                if np.percentile(lat, 99) > 0.1 or fail:
                    misses.append(f"cone p99 {np.percentile(lat, 99) * 1e3:.0f} ms (target < 100 ms), {fail} failures")

        if "memory" in phases:
            # memory over many cutout requests
            samples = []
            chunk = max(1, args.memory_requests // 10)
            done = 0
            while done < args.memory_requests:
                n = min(chunk, args.memory_requests - done)
                p = rng.uniform(half + 2, args.mosaic - half - 2, (n, 2))
                a, d = wcs.pixel_to_world_values(p[:, 0], p[:, 1])
                reqs = [(f"{base}/soda/sync", {"ID": "bench_f158_coadd", "CIRCLE": f"{x} {y} {radius_deg}"})
                        for x, y in zip(a, d)]
                _, _, fail = _load(reqs, 8, is_asdf)
                done += n
                samples.append((done, server.rss_mb()))
                if fail:
                    misses.append(f"{fail} failed requests in the memory run")
            warm = samples[0][1]
            last = samples[-1][1]
            grow = last - warm
            if grow > 0.1 * warm and grow > 100:
                misses.append(f"server memory grew {warm:.0f} -> {last:.0f} MB over {done} requests")
    finally:
        server.stop()

    print(f"\nservices benchmark: {args.mosaic}^2 L3 mosaic, {args.cutout}^2 cutouts, {args.requests} requests per "
          f"level, loopback, {os.cpu_count()} CPUs shared by client and server")
    width = max([len(r[0]) for r in rows] + [4])
    print(f"{'what':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}  {'per s':>8}  failed")
    for name, p50, p99, rate, fail in rows:
        print(f"{name:<{width}}  {p50:8.1f}  {p99:8.1f}  {rate:8.1f}  {fail}")
    if per_cutout is not None:
        print(f"\nper cutout: service {per_cutout * 1e3:.1f} ms (1 client, HTTP included) vs astrocut "
              f"{astro * 1e3:.1f} ms -> {ratio:.1f}x (target >= 5x)")
    if samples:
        print("server memory (MB) after N requests: " + ", ".join(f"{n}: {m:.0f}" for n, m in samples))
    return verdict(misses)


if __name__ == "__main__":
    raise SystemExit(main())
