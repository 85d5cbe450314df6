"""File formats: ASDF products through roman_datamodels, Parquet catalogs."""

from romanflow.formats.asdf_io import (
    atomic_path,
    check_l1,
    check_output_folder,
    check_output_path,
    check_product_name,
    check_read_pattern,
    clear_stale_partials,
    open_model,
    read_l1,
    read_l2,
    to_plain,
    write_l1,
    write_l2,
)

__all__ = ["atomic_path", "check_l1", "check_output_folder", "check_output_path", "check_product_name",
           "check_read_pattern", "clear_stale_partials", "open_model", "read_l1", "read_l2", "to_plain", "write_l1",
           "write_l2"]
