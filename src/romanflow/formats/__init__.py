"""File formats: ASDF products through roman_datamodels, Parquet catalogs."""

from romanflow.formats.asdf_io import (
    atomic_path,
    check_l1,
    open_model,
    read_l1,
    read_l2,
    to_plain,
    write_l1,
    write_l2,
)

__all__ = ["atomic_path", "check_l1", "open_model", "read_l1", "read_l2", "to_plain", "write_l1", "write_l2"]
