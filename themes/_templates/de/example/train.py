"""Example of theme {{THEME}}: a processing-style job. It reads a `raw` channel (Parquet or CSV files of events:
user, ts, amount), cleans and aggregates it with Polars, and writes the result as Parquet, the same in the kernel
and as a job in the image:

    python themes/{{THEME}}/example/train.py --output-dir /tmp/out                 # in the kernel
    inv train --theme {{THEME}} --entry-point themes/{{THEME}}/example/train.py     # a job in the image
    inv train --theme {{THEME}} --entry-point themes/{{THEME}}/example/train.py --channel raw=data/events/

Without a `raw` channel it generates a seeded events table (no download). Writes daily.parquet to
SM_OUTPUT_DATA_DIR (a job's output.tar.gz, collected into runs/<job>/) and prints `rows_in=…`, `rows_out=…`.
"""

import argparse
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", default=os.environ.get("SM_CHANNEL_RAW"))
    parser.add_argument("--rows", type=int, default=10_000, help="generated rows when there is no raw channel")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", 42)))
    parser.add_argument("--output-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))  # a job must write one; unused
    return parser.parse_args()


def read(args: argparse.Namespace) -> pl.DataFrame:
    if not args.raw:
        rng = np.random.default_rng(args.seed)
        start = datetime(2025, 1, 1)
        return pl.DataFrame(
            {
                "user": rng.integers(0, 500, args.rows).astype(str),
                "ts": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 60 * 24 * 30, args.rows)],
                "amount": np.round(rng.gamma(2.0, 20.0, args.rows), 2),
            }
        )
    folder = Path(args.raw)
    files = sorted(folder.glob("*.parquet")) + sorted(folder.glob("*.csv")) if folder.is_dir() else [folder]
    if not files:
        raise SystemExit(f"no Parquet or CSV file in the raw channel {args.raw}")
    frames = [pl.read_parquet(f) if f.suffix == ".parquet" else pl.read_csv(f, try_parse_dates=True) for f in files]
    return pl.concat(frames, how="diagonal_relaxed")


def transform(events: pl.DataFrame) -> pl.DataFrame:
    missing = {"user", "ts", "amount"} - set(events.columns)
    if missing:
        raise SystemExit(f"the raw events lack the columns {sorted(missing)}: give user, ts, amount")
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


def main() -> None:
    args = parse_args()
    events = read(args)
    daily = transform(events)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    daily.write_parquet(output / "daily.parquet")
    metrics = {"rows_in": events.height, "rows_out": daily.height, "amount": round(float(daily["amount"].sum()), 2)}
    for folder in filter(None, [output, args.model_dir and Path(args.model_dir)]):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}, indent=2))
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)


if __name__ == "__main__":
    main()
