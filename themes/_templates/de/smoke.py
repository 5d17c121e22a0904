"""Smoke test of theme {{THEME}}: a Parquet round trip through PyArrow and a Polars aggregation."""

import io

import boto3
import polars as pl
import pyarrow
import pyarrow.parquet as pq

frame = pl.DataFrame({"key": ["a", "b", "a"], "value": [1.0, 2.0, 3.0]})
buffer = io.BytesIO()
pq.write_table(frame.to_arrow(), buffer)
buffer.seek(0)
back = pl.from_arrow(pq.read_table(buffer))
totals = back.group_by("key").agg(pl.col("value").sum()).sort("key")
assert totals["value"].to_list() == [4.0, 2.0], totals
print(f"smoke {{THEME}}: ok (polars {pl.__version__}, pyarrow {pyarrow.__version__}, boto3 {boto3.__version__})")
