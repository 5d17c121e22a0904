"""The Titanic data: fetch (URL or local path) with a pinned sha256, validate, split, stage."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from .settings import Settings

TITANIC_COLUMNS = [
    "PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare", "Cabin", "Embarked",
]
CHANNELS = ("train", "validation")


class DataError(ValueError):
    """The data set is unusable; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class StagedData:
    source: str
    sha256: str
    channels: dict[str, Path]  # channel -> folder holding its CSV
    rows: dict[str, int]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(settings: Settings, source: str | None = None) -> tuple[Path, str]:
    """Return a verified local copy of the CSV and where it came from. Downloads once into data/raw/."""
    source = source or settings.titanic_csv or settings.titanic_url
    if source.startswith(("http://", "https://")):
        target = settings.data_dir / "raw/titanic.csv"
        if not (target.is_file() and sha256_of(target) == settings.titanic_sha256):
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".part")
            print(f"[data] downloading {source}", flush=True)
            try:
                with urllib.request.urlopen(source, timeout=60) as response, partial.open("wb") as out:
                    shutil.copyfileobj(response, out)
            except OSError as error:
                partial.unlink(missing_ok=True)
                raise DataError(f"cannot download {source} ({error}); set TITANIC_CSV to a local copy") from None
            try:
                _verify(partial, settings.titanic_sha256, source)
            except DataError:
                partial.unlink()
                raise
            partial.replace(target)  # only a verified file ever takes the place of the cached one
        return target, source
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"TITANIC_CSV {path} does not exist: give the path of the Kaggle Titanic train.csv")
    _verify(path, settings.titanic_sha256, str(path))
    return path, str(path)


def _verify(path: Path, expected: str, label: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{label} has sha256 {actual}, expected {expected}: it is not the pinned Titanic train.csv "
            "(re-download it, or set TITANIC_SHA256 if you deliberately use another version)"
        )


def load(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV ({error})") from None
    missing = [c for c in TITANIC_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the Titanic columns {missing}: expected the Kaggle train.csv header")
    if len(frame) < 50 or frame["Survived"].nunique() != 2:
        raise DataError(f"{path} has {len(frame)} rows and {frame['Survived'].nunique()} classes: too few to train on")
    return frame


def split_and_stage(settings: Settings, source: str | None = None) -> StagedData:
    """Stratified, seeded split written to data/staged/<digest>/{train,validation}/ (reused when present)."""
    path, origin = fetch(settings, source)
    sha = sha256_of(path)
    frame = load(path)
    key = f"{sha[:12]}-seed{settings.seed}-val{settings.validation_fraction:g}"
    stage = settings.data_dir / "staged" / key
    if not all((stage / channel / f"{channel}.csv").is_file() for channel in CHANNELS):
        train, validation = train_test_split(
            frame, test_size=settings.validation_fraction, stratify=frame["Survived"], random_state=settings.seed
        )
        scratch = stage.with_name(stage.name + ".tmp")
        shutil.rmtree(scratch, ignore_errors=True)
        for channel, part in zip(CHANNELS, (train, validation)):
            (scratch / channel).mkdir(parents=True)
            part.to_csv(scratch / channel / f"{channel}.csv", index=False)
        shutil.rmtree(stage, ignore_errors=True)
        scratch.rename(stage)
    channels = {channel: stage / channel for channel in CHANNELS}
    rows = {channel: len(pd.read_csv(folder / f"{channel}.csv")) for channel, folder in channels.items()}
    return StagedData(source=origin, sha256=sha, channels=channels, rows=rows)
