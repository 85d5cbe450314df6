"""ObsCore 1.1 column metadata (UCDs, units, utypes) of the archive's ``obscore`` table."""

from __future__ import annotations

from romanflow.services.votable import ColumnMeta

OBSCORE_UCD = {
    "obs_publisher_did": ("meta.ref.ivoid", None), "obs_id": ("meta.id", None),
    "obs_collection": ("meta.id", None), "dataproduct_type": ("meta.code.class", None),
    "dataproduct_subtype": ("meta.code.class", None), "calib_level": ("meta.code;obs.calib", None),
    "target_name": ("meta.id;src", None), "s_ra": ("pos.eq.ra", "deg"), "s_dec": ("pos.eq.dec", "deg"),
    "s_fov": ("phys.angSize;instr.fov", "deg"), "s_region": ("pos.outline;obs.field", None),
    "s_resolution": ("pos.angResolution", "arcsec"), "s_xel1": ("meta.number", None),
    "s_xel2": ("meta.number", None), "t_min": ("time.start;obs.exposure", "d"),
    "t_max": ("time.end;obs.exposure", "d"), "t_exptime": ("time.duration;obs.exposure", "s"),
    "em_min": ("em.wl;stat.min", "m"), "em_max": ("em.wl;stat.max", "m"), "o_ucd": ("meta.ucd", None),
    "pol_states": ("meta.code;phys.polarization", None), "facility_name": ("meta.id;instr.tel", None),
    "instrument_name": ("meta.id;instr", None), "access_url": ("meta.ref.url", None),
    "access_format": ("meta.code.mime", None), "access_estsize": ("phys.size;meta.file", "kbyte"),
}


def obscore_metadata() -> dict:
    """Column name -> ColumnMeta for ObsCore and Roman columns (descriptions from the archive schema)."""
    from romanflow.archive.schema import RESULT_COLUMNS

    out = {}
    for name, _, unit, description in RESULT_COLUMNS:
        ucd, std_unit = OBSCORE_UCD.get(name, (None, None))
        out[name] = ColumnMeta(unit=std_unit or unit or None, ucd=ucd, description=description,
                               utype=f"obscore:{_OBSCORE_UTYPE[name]}" if name in _OBSCORE_UTYPE else None,
                               xtype="adql:REGION" if name == "s_region" else None)
    return out


_OBSCORE_UTYPE = {
    "obs_publisher_did": "Curation.PublisherDID", "obs_id": "DataID.observationID",
    "obs_collection": "DataID.Collection", "dataproduct_type": "ObsDataset.dataProductType",
    "dataproduct_subtype": "ObsDataset.dataProductSubtype", "calib_level": "ObsDataset.calibLevel",
    "target_name": "Target.name", "s_ra": "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
    "s_dec": "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
    "s_fov": "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
    "s_region": "Char.SpatialAxis.Coverage.Support.Area",
    "s_resolution": "Char.SpatialAxis.Resolution.Refval.value", "s_xel1": "Char.SpatialAxis.numBins1",
    "s_xel2": "Char.SpatialAxis.numBins2", "t_min": "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
    "t_max": "Char.TimeAxis.Coverage.Bounds.Limits.StopTime", "t_exptime": "Char.TimeAxis.Coverage.Support.Extent",
    "em_min": "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
    "em_max": "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", "o_ucd": "Char.ObservableAxis.ucd",
    "pol_states": "Char.PolarizationAxis.stateList", "facility_name": "Provenance.ObsConfig.Facility.name",
    "instrument_name": "Provenance.ObsConfig.Instrument.name", "access_url": "Access.Reference",
    "access_format": "Access.Format", "access_estsize": "Access.Size",
}
