"""Catalogs: the attribute schema, sources, packed Parquet shards, splits and the synthetic catalog."""
