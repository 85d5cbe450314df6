"""The archive: every product registered (IVOA ObsCore + Roman columns), found by sky, time and band,
with its lineage and the reprocessing loop; SQLite embedded, PostgreSQL + pgSphere + q3c at scale.

>>> from romanflow.archive import Archive
>>> arc = Archive.open("sqlite:///out/archive.db")              # doctest: +SKIP
>>> arc.ingest(["out/"])                                        # doctest: +SKIP
>>> arc.search(ra=270.0, dec=66.0, radius=0.1, band="F158")     # doctest: +SKIP
"""

from romanflow.archive.core import Archive, ArchiveError, IngestReport, default_url, expand_paths
from romanflow.archive.products import KINDS, ProductRecord, obs_id_of, read_product

__all__ = ["Archive", "ArchiveError", "IngestReport", "KINDS", "ProductRecord", "default_url", "expand_paths",
           "obs_id_of", "read_product"]
