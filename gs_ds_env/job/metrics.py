"""A job's metrics, read as SageMaker reads them: from the lines the program prints, with metric definitions (one
regex a name, its one group the value), which the SageMaker path passes on to CreateTrainingJob. Without any of the
user's, the definitions read:
- the project's format, one line `<split>:<name>=<number>` (split: train, validation or test), e.g.
  `validation:rmse=0.4211`;
- the frameworks' own log lines, under the same names (as SageMaker's built-in XGBoost names them): XGBoost's eval
  lines (`[9]#011validation-rmse:0.42`; #011 is a tab as CloudWatch shows it), LightGBM's (`[9]\tvalid_0's l2:
  0.18`) and Keras' (`- loss: 0.31 - val_loss: 0.35`).
Any other format is named with `--metric-definition name=regex` (the SDK's `metric_definitions`), which wins over a
built-in definition of the same name. The last value printed wins (SageMaker's final metric). A `metrics.json` in
the model, when the program writes one, adds to or overrides these."""

from __future__ import annotations

import re
from collections.abc import Iterable

from gs_ds_env.settings import ConfigError

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
# Local mode prefixes each line with the container's name, in colour: `abc-algo-1-xyz  | validation:rmse=0.42`.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
COMPOSE_PREFIX = re.compile(r"^\S+\s+\|\s?")
PROJECT_LINE = re.compile(rf"^\s*((?:train|validation|test):[A-Za-z0-9_.\-/]{{1,200}})\s*=\s*({NUMBER})\s*$")
# Names SageMaker shows without any definition of the user's: the project's format for the usual metrics.
COMMON = ("auc", "accuracy", "f1", "logloss", "loss", "rmse", "mae", "mse", "mape", "r2", "error")
# CreateTrainingJob's limits (AlgorithmSpecification.MetricDefinitions).
MAX_DEFINITIONS, MAX_NAME, MAX_REGEX = 40, 255, 500
# How each framework names the two splits in its log lines (XGBoost: the evals' names, `validation_0` from its
# scikit-learn API; LightGBM: `training`, `valid_0`/`valid_1`) and each metric.
SPLITS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "eval", "validation_0", "valid_0", "valid_1"),
}
XGBOOST = {"auc": "auc", "logloss": "logloss", "rmse": "rmse", "mae": "mae", "mape": "mape", "error": "error"}
LIGHTGBM = {"auc": "auc", "logloss": "(?:binary|multi)_logloss", "rmse": "rmse", "mse": "l2", "mae": "l1", "error": "binary_error"}  # fmt: skip
KERAS = {"loss": "loss", "accuracy": "acc(?:uracy)?", "auc": "auc", "mae": "mae", "mse": "mse"}
FRAMEWORKS = "the project's `<split>:<name>=<number>` lines, XGBoost's, LightGBM's and Keras' log lines"


def _regex(split: str, metric: str) -> str:
    """One regex (one group: the value) for a name, in every format that prints it."""
    names = "|".join(SPLITS[split]) if split in SPLITS else split
    forms = [f"^{split}:{metric}="]
    if metric in XGBOOST and split in SPLITS:
        forms.append(rf"\[\d+\].*?(?:#011|\s)(?:{names})-{XGBOOST[metric]}:")
    if metric in LIGHTGBM and split in SPLITS:
        forms.append(rf"\[\d+\].*?\s(?:{names})'s {LIGHTGBM[metric]}: ")
    if metric in KERAS:
        forms.append(rf"(?:^|\s-\s){KERAS[metric]}: " if split == "train" else rf"\sval_{KERAS[metric]}: ")
    return f"(?:{'|'.join(forms)})\\s*({NUMBER})" if len(forms) > 1 else f"{forms[0]}({NUMBER})"


def default_definitions() -> list[dict[str, str]]:
    return [
        {"Name": f"{split}:{metric}", "Regex": _regex(split, metric)}
        for split in ("train", "validation")
        for metric in COMMON
    ]


def parse_definitions(specs: Iterable[str]) -> list[dict[str, str]]:
    """--metric-definition name=regex (the regex's one group is the value) -> the SDK's metric_definitions."""
    definitions: dict[str, str] = {}
    for spec in specs:
        name, sep, regex = spec.partition("=")
        name = name.strip()
        if not sep or not name or not regex:
            raise ConfigError(
                f"--metric-definition {spec!r} is not name=regex: e.g. --metric-definition 'val_loss=val_loss: ([0-9.]+)'"
            )
        if name in definitions:
            raise ConfigError(f"--metric-definition {name!r} is given twice: keep one")
        if len(name) > MAX_NAME or len(regex) > MAX_REGEX:
            raise ConfigError(
                f"--metric-definition {name!r}: SageMaker allows names of at most {MAX_NAME} characters and "
                f"regexes of at most {MAX_REGEX}"
            )
        try:
            groups = re.compile(regex).groups
        except re.error as error:
            raise ConfigError(
                f"--metric-definition {name!r}: {regex!r} is not a regular expression ({error})"
            ) from None
        if groups != 1:
            raise ConfigError(
                f"--metric-definition {name!r}: the regex needs exactly one (group) around the value, it has {groups}"
            )
        definitions[name] = regex
    return [{"Name": name, "Regex": regex} for name, regex in definitions.items()]


def for_job(user: list[dict[str, str]]) -> list[dict[str, str]]:
    """The definitions a job sends: the user's, then the project's defaults under names the user did not take."""
    taken = {definition["Name"] for definition in user}
    combined = user + [definition for definition in default_definitions() if definition["Name"] not in taken]
    if len(user) > MAX_DEFINITIONS:
        raise ConfigError(f"{len(user)} metric definitions: SageMaker allows at most {MAX_DEFINITIONS} per job")
    return combined[:MAX_DEFINITIONS]


def from_lines(lines: Iterable[str], definitions: list[dict[str, str]] = ()) -> dict[str, float]:
    """Every metric the lines print, in the project's format or by a definition; the last value wins."""
    compiled = [(definition["Name"], re.compile(definition["Regex"])) for definition in definitions]
    found: dict[str, float] = {}
    for raw in lines:
        line = COMPOSE_PREFIX.sub("", ANSI.sub("", raw.rstrip("\n")), count=1)
        match = PROJECT_LINE.match(line)
        if match:
            found[match.group(1)] = float(match.group(2))
        for name, pattern in compiled:
            hit = pattern.search(line)
            if hit:
                try:
                    found[name] = float(hit.group(1))
                except (TypeError, ValueError):
                    continue
    return found
