"""Data services over HTTP speaking the Virtual Observatory's standards.

:func:`create_app` builds the ASGI application over a :class:`romanflow.archive.Archive`: SIA v2
(``/sia``), DataLink (``/datalink``), SODA cutouts (``/soda/sync``), Simple Cone Search (``/scs/{catalog}``),
TAP with ADQL (``/tap``), HATS catalogs over HTTP (``/hats/{name}/``), a JSON API (``/api/``) and the
archive's files by identifier (``/files/{obs_id}``). ``romanflow serve`` runs it under uvicorn.
"""

from romanflow.services.app import ServiceConfig, ServiceLimits, create_app

__all__ = ["create_app", "ServiceConfig", "ServiceLimits"]
