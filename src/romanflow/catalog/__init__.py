"""L4: source catalogs from L2 images and L3 mosaics, written as Parquet and HATS."""
