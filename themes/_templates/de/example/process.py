"""Example of theme {{THEME}}: a processing job (SageMaker Processing's contract). It reads the `raw` input (Parquet or
CSV files of events: user, ts, amount), cleans and aggregates them per day with Polars, and writes Parquet, the same
in the kernel and as a job in the image:

    python themes/{{THEME}}/example/process.py --raw data/events/ --output-dir /tmp/daily          # in the kernel
    inv process --theme {{THEME}} --code themes/{{THEME}}/example/process.py --output daily      # a job in the image
    inv process --theme {{THEME}} --code themes/{{THEME}}/example/process.py --input raw=data/events/ --output daily
    TARGET=sagemaker inv process ... --input raw=s3://bucket/events/ --shard --instance-count 4 --output daily

Without a `raw` input it generates a seeded events table (no download). With --shard each instance gets some of the
raw files (ShardedByS3Key) and writes its own daily-<host>.parquet and metrics-<host>.json (read the parts together:
a day may be in several). Writes metrics.json beside the Parquet and prints `rows_in=…`, `rows_out=…`.
"""

import argparse
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

INPUT = "/opt/ml/processing/input/raw"  # where SageMaker Processing mounts the input named `raw`
OUTPUT = "/opt/ml/processing/output/daily"  # uploaded as the output named `daily`
RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")  # this host and all hosts, as SageMaker writes it


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", default=INPUT, help="a folder of Parquet/CSV event files, or one file")
    parser.add_argument("--rows", type=int, default=10_000, help="generated rows when there is no raw input")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", default=OUTPUT)
    return parser.parse_args()


def read(args: argparse.Namespace) -> pl.DataFrame:
    folder = Path(args.raw)
    if not folder.exists():
        rng = np.random.default_rng(args.seed)
        start = datetime(2025, 1, 1)
        return pl.DataFrame(
            {
                "user": rng.integers(0, 500, args.rows).astype(str),
                "ts": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 30, args.rows)],
                "amount": np.round(rng.gamma(2.0, 20.0, args.rows), 2),
            }
        )
    files = sorted(folder.rglob("*.parquet")) + sorted(folder.rglob("*.csv")) if folder.is_dir() else [folder]
    if not files:
        raise ValueError(f"no Parquet or CSV file in the raw input {args.raw}")
    frames = [pl.read_parquet(f) if f.suffix == ".parquet" else pl.read_csv(f, try_parse_dates=True) for f in files]
    return pl.concat(frames, how="diagonal_relaxed")


def transform(events: pl.DataFrame) -> pl.DataFrame:
    missing = {"user", "ts", "amount"} - set(events.columns)
    if missing:
        raise ValueError(f"the raw events lack the columns {sorted(missing)}: give user, ts, amount")
    return (
        events.drop_nulls(["user", "ts", "amount"])
        .filter(pl.col("amount") > 0)
        .with_columns(pl.col("ts").cast(pl.Datetime).dt.date().alias("day"))
        .group_by("day")
        .agg(
            pl.len().alias("events"),
            pl.col("user").n_unique().alias("users"),
            pl.col("amount").sum().round(2).alias("amount"),
        )
        .sort("day")
    )


def host_suffix() -> str:
    """'' on one host; '-<host>' when the job runs on several (each has its shard, and its own files)."""
    if RESOURCE_CONFIG.is_file():
        config = json.loads(RESOURCE_CONFIG.read_text())
        if len(config.get("hosts", [])) > 1:
            return f"-{config['current_host']}"
    return ""


def main() -> int:
    args = parse_args()
    try:
        events = read(args)
        daily = transform(events)
    except (ValueError, OSError, pl.exceptions.PolarsError) as error:
        print(f"process failed: {error}", file=sys.stderr)
        return 1
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    suffix = host_suffix()
    daily.write_parquet(output / f"daily{suffix}.parquet")
    metrics = {"rows_in": events.height, "rows_out": daily.height, "amount": round(float(daily["amount"].sum()), 2)}
    (output / f"metrics{suffix}.json").write_text(json.dumps({"metrics": metrics}, indent=2))
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
