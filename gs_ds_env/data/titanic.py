"""The Titanic data: fetched (URL or local path) with a pinned sha256, validated, split and staged under data/staged/,
each channel's sha256 recorded and checked again on every reuse."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gs_ds_env.errors import InputError
from gs_ds_env.flock import exclusive
from gs_ds_env.settings import Settings

if TYPE_CHECKING:  # pandas and scikit-learn cost seconds to import: only the steps that split data load them
    import pandas as pd

TITANIC_COLUMNS = [
    "PassengerId",
    "Survived",
    "Pclass",
    "Name",
    "Sex",
    "Age",
    "SibSp",
    "Parch",
    "Ticket",
    "Fare",
    "Cabin",
    "Embarked",
]
CHANNELS = ("train", "validation")
CHANNELS_MANIFEST = "channels.json"
READ_TIMEOUT = 20  # seconds without a byte before a download is given up
DOWNLOAD_DEADLINE = 120.0  # seconds for the whole download (the file is 61 kB)

TITANIC_THEME = "tabular"  # its image trains Titanic by default; its example reads the same channels


class DataError(InputError):
    """The data set is unusable; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class StagedData:
    source: str
    sha256: str
    channels: dict[str, Path]  # channel -> folder holding its CSV
    rows: dict[str, int]
    channel_sha256: dict[str, str]  # channel -> sha256 of its CSV as staged (checked again on every reuse)


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
                _download(source, partial)
                _verify(partial, settings.titanic_sha256, source)
                partial.replace(target)  # only a verified file ever takes the place of the cached one
            finally:
                partial.unlink(missing_ok=True)  # whatever stopped it (error, deadline, Ctrl-C): no partial file
        return target, source
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"TITANIC_CSV {path} does not exist: give the path of the Kaggle Titanic train.csv")
    _verify(path, settings.titanic_sha256, str(path))
    return path, str(path)


def _download(source: str, partial: Path) -> None:
    """Copy `source` to `partial` within DOWNLOAD_DEADLINE seconds in all (a server trickling bytes never
    trips the per-read timeout, so the whole download has a deadline too)."""
    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    try:
        with urllib.request.urlopen(source, timeout=READ_TIMEOUT) as response, partial.open("wb") as out:
            while block := response.read1(1 << 16):  # read1: whatever has arrived, so a trickle cannot block
                out.write(block)
                if time.monotonic() > deadline:
                    raise DataError(
                        f"downloading {source} took longer than {DOWNLOAD_DEADLINE:g} s: stopped; "
                        "set TITANIC_CSV to a local copy"
                    )
    except OSError as error:
        raise DataError(f"cannot download {source} ({error}); set TITANIC_CSV to a local copy") from None


def _verify(path: Path, expected: str, label: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(
            f"{label} has sha256 {actual}, expected {expected}: it is not the pinned Titanic train.csv "
            "(re-download it, or set TITANIC_SHA256 if you deliberately use another version)"
        )


def load(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable CSV ({error})") from None
    missing = [c for c in TITANIC_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path} lacks the Titanic columns {missing}: expected the Kaggle train.csv header")
    labels = frame["Survived"]
    if labels.isna().any():
        raise DataError(f"{path}: {int(labels.isna().sum())} rows have no Survived label: drop or fill them")
    if not labels.isin([0, 1]).all():
        odd = sorted(map(str, labels[~labels.isin([0, 1])].unique()))[:5]
        raise DataError(f"{path}: Survived must be 0 or 1, found {', '.join(odd)}: fix the labels")
    if len(frame) < 50 or labels.nunique() != 2:
        raise DataError(
            f"{path} has {len(frame)} rows and {labels.nunique()} classes: need at least 50 rows "
            "and both classes (0 and 1) to train on"
        )
    return frame


def _channel_file(stage: Path, channel: str) -> Path:
    return stage / channel / f"{channel}.csv"


def _recorded_channels(stage: Path) -> dict | None:
    """The sha256 and row count of each channel as written, when every file still has that content."""
    manifest = stage / CHANNELS_MANIFEST
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    for channel in CHANNELS:
        path = _channel_file(stage, channel)
        extra = sorted(p.name for p in path.parent.iterdir() if p.name != path.name) if path.parent.is_dir() else []
        if extra:
            # A job reads every file of its channel: an extra one would be trained on, and the record would
            # vouch only for the staged file. Not deleted here: it may be someone's.
            raise DataError(
                f"{path.parent} holds {', '.join(extra)} besides {path.name}: the job would train on it too; "
                f"move it out of {path.parent} (nothing was removed) and run again"
            )
        entry = recorded.get(channel, {})
        if not path.is_file() or sha256_of(path) != entry.get("sha256"):
            print(
                f"[data] {path} is not the file staged from the verified source (missing or changed): staging again",
                flush=True,
            )
            return None
    return recorded


def split_and_stage(settings: Settings, source: str | None = None) -> StagedData:
    """Stratified, seeded split written to data/staged/<digest>/{train,validation}/.

    A staged folder is reused only when every channel still has the sha256 recorded when it was written, so a
    file edited or truncated after staging is staged again from the verified source, never trained on."""
    path, origin = fetch(settings, source)
    sha = sha256_of(path)
    key = f"{sha[:12]}-seed{settings.seed}-val{settings.validation_fraction:g}"
    stage = settings.data_dir / "staged" / key
    stage.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(stage.with_name(stage.name + ".lock"), f"staging {key}"):
        recorded = _recorded_channels(stage)
        if recorded is None:  # the source is read (and checked) only to stage it: its sha256 names the folder
            from sklearn.model_selection import train_test_split

            frame = load(path)
            train, validation = train_test_split(
                frame, test_size=settings.validation_fraction, stratify=frame["Survived"], random_state=settings.seed
            )
            scratch = stage.with_name(stage.name + ".tmp")
            shutil.rmtree(scratch, ignore_errors=True)
            recorded = {}
            for channel, part in zip(CHANNELS, (train, validation), strict=True):
                (scratch / channel).mkdir(parents=True)
                part.to_csv(_channel_file(scratch, channel), index=False)
                recorded[channel] = {"sha256": sha256_of(_channel_file(scratch, channel)), "rows": len(part)}
            (scratch / CHANNELS_MANIFEST).write_text(json.dumps(recorded, indent=2))
            shutil.rmtree(stage, ignore_errors=True)
            scratch.rename(stage)
    channels = {channel: stage / channel for channel in CHANNELS}
    return StagedData(
        source=origin,
        sha256=sha,
        channels=channels,
        rows={channel: recorded[channel]["rows"] for channel in CHANNELS},
        channel_sha256={channel: recorded[channel]["sha256"] for channel in CHANNELS},
    )
