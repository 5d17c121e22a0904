"""Tabular example: the Titanic program the tabular image runs by default (training/titanic), as a script-mode
entry point. Hyperparameters arrive as arguments, data and output folders from the SM_* variables the SageMaker
training toolkit sets, so the same file runs in the tabular kernel and as a job in the tabular image:

    python themes/tabular/example/train.py --train DIR --validation DIR --model-dir /tmp/model   # in the kernel
    inv train --theme tabular --entry-point themes/tabular/example/train.py   # a job (the staged Titanic channels)

`titanic` is importable in both places: the image puts /opt/program on its path, the kernel installs this project.
Writes model.joblib and metrics.json to SM_MODEL_DIR, the ROC and confusion-matrix pictures to
SM_OUTPUT_DATA_DIR, and prints `validation:auc=…` lines.
"""

import os
import sys
import tempfile

from titanic.train import TrainingError, argument_parser, fit


def main() -> int:
    parser = argument_parser()
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"), help="folder of the train CSV")
    parser.add_argument(
        "--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"), help="folder of the validation CSV"
    )
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument(
        "--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", os.path.join(tempfile.gettempdir(), "output"))
    )
    try:
        args, _ = parser.parse_known_args()  # SageMaker may pass more hyperparameters than this script uses
        if not (args.train and args.validation):
            raise TrainingError("no data: pass --train and --validation folders (a job gets them as channels)")
        fit({"train": args.train, "validation": args.validation}, args.model_dir, args.output_data_dir, args)
    except TrainingError as error:
        print(f"training failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
