"""Tabular example, a processing job: the Kaggle Titanic train.csv in, the stratified, seeded train/validation split
the Titanic program reads out (the split the host makes when it stages the data, made in the image instead):

    inv process --theme tabular --code themes/tabular/example/prepare.py --input raw=data/raw/titanic.csv \
        --output train --output validation
    python themes/tabular/example/prepare.py --raw data/raw/titanic.csv --output-dir /tmp/split   # in the kernel

With --new-rows N it first holds out N passengers, labels dropped, as new/new.csv (header-less: SageMaker's batch
format), the rows a batch transform predicts. Then `inv train --theme tabular --entry-point themes/tabular/example/train.py --channel train=runs/<job>/output/train
--channel validation=runs/<job>/output/validation`. Reads every CSV of the `raw` input; writes
<output-dir>/train/train.csv and <output-dir>/validation/validation.csv; prints `rows:<split>=<n>` lines.
"""

import argparse
import sys
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

INPUT = "/opt/ml/processing/input/raw"  # where SageMaker Processing mounts the input named `raw`
OUTPUT = "/opt/ml/processing/output"  # <output>/<name>/ is uploaded as the output named <name>
COLUMNS = ["PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare", "Cabin",
           "Embarked"]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default=INPUT, help="the Titanic CSV, or a folder of CSV files")
    parser.add_argument("--output-dir", default=OUTPUT, help="train/ and validation/ are written under it")
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--new-rows", type=int, default=0,
        help="hold out this many rows, labels dropped, as new/new.csv: header-less, SageMaker's batch format",
    )  # fmt: skip
    return parser.parse_args()


def read(raw: Path) -> pd.DataFrame:
    files = sorted(raw.rglob("*.csv")) if raw.is_dir() else [raw]
    if not files:
        raise ValueError(f"no CSV file in {raw}: give the Titanic train.csv as the input named raw")
    frame = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{', '.join(f.name for f in files)} lack the Titanic columns {missing}")
    labels = frame["Survived"]
    if labels.isna().any() or not labels.isin([0, 1]).all() or labels.nunique() != 2:
        raise ValueError("Survived must be 0 or 1 on every row, with both classes present")
    return frame


def main() -> int:
    args = parse_args()
    if not 0 < args.validation_fraction < 1:
        print(f"--validation-fraction {args.validation_fraction}: give a fraction between 0 and 1", file=sys.stderr)
        return 2
    try:
        frame = read(Path(args.raw))
    except (ValueError, OSError, pd.errors.ParserError) as error:
        print(f"prepare failed: {error}", file=sys.stderr)
        return 1
    if not 0 <= args.new_rows < len(frame) // 2:
        print(f"--new-rows {args.new_rows}: give 0 to {len(frame) // 2 - 1}", file=sys.stderr)
        return 2
    if args.new_rows:  # passengers whose fate the model is asked for, as a batch file would bring them
        new = frame.sample(n=args.new_rows, random_state=args.seed)
        frame = frame.drop(index=new.index)
        (Path(args.output_dir) / "new").mkdir(parents=True, exist_ok=True)
        new.drop(columns=["Survived"]).to_csv(Path(args.output_dir) / "new/new.csv", index=False, header=False)
        print(f"rows:new={len(new)}", flush=True)
    train, validation = train_test_split(
        frame, test_size=args.validation_fraction, stratify=frame["Survived"], random_state=args.seed
    )
    for name, part in (("train", train), ("validation", validation)):
        folder = Path(args.output_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        part.to_csv(folder / f"{name}.csv", index=False)
        print(f"rows:{name}={len(part)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
