"""A batch transform's input: .csv or .jsonl files (or an s3:// URI) read line by line as SageMaker splits them
(SplitType=Line), a CSV's header decided (never guessed), and the rows staged for sending without it."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.settings import ConfigError

KINDS = {".csv": "text/csv", ".jsonl": "application/jsonlines", ".jsonlines": "application/jsonlines"}
COLUMNS_VARIABLE = "GS_CSV_COLUMNS"


@dataclass
class InputFile:
    path: Path
    lines: list[str]  # every non-blank line as it is in the file (a CSV record a line)

    def rows(self, header: bool) -> list[str]:
        return self.lines[1:] if header else self.lines

    def columns(self) -> list[str]:
        return next(csv.reader([self.lines[0]]), []) if self.lines else []


@dataclass
class TransformInput:
    files: list[InputFile]  # local input files (empty for an s3:// input)
    content_type: str
    header: bool | None  # --header / --no-header; None: as the model's handler declares
    s3_uri: str | None = None
    columns: list[str] | None = field(default=None, init=False)  # a CSV's header, once decided

    def decide_header(self, handler_reads_header: bool) -> None:
        """Whether the first line of each CSV file is its header: as given, else as the handler declares."""
        if self.content_type != "text/csv":
            self.header = False
            return
        if self.header is None:
            self.header = handler_reads_header
        if self.header:
            headers = {tuple(f.columns()) for f in self.files}
            if len(headers) > 1:
                raise ConfigError("the CSV files have different headers: transform them one at a time")
            self.columns = list(headers.pop()) if headers else None

    def header_note(self) -> str:
        if self.content_type != "text/csv":
            return "JSON Lines: one record a line"
        if self.header is None:
            return "CSV header: none unless the model's handler declares one (the Titanic handler does); --header / --no-header decide"
        return (
            f"CSV header: the first line (--header), given to the model as {COLUMNS_VARIABLE}"
            if self.header
            else "CSV header: none, every line is a row (--no-header)"
        )


def _read_lines(path: Path, content_type: str) -> list[str]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError(
            f"--input {path} is not UTF-8 text (byte {error.start}, line {line}): save it as UTF-8, e.g. "
            f"iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}"
        ) from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    kept = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if content_type == "text/csv" and line.count('"') % 2:
            raise ConfigError(
                f"--input {path} line {number} has a line break inside a quoted field: batch transform splits by "
                "line (SageMaker too) and would cut that row in two; put the field on one line (or send JSON Lines)"
            )
        kept.append(line)
    return kept


def read_input(path: str, header: bool | None = None) -> TransformInput:
    if path.startswith("s3://"):
        kind = next((k for suffix, k in KINDS.items() if path.endswith(suffix)), "text/csv")
        return TransformInput([], kind, header, path)
    source = Path(path).expanduser()
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in KINDS) if source.is_dir() else [source]
    if not source.exists() or not files:
        raise ConfigError(f"--input {path}: give a .csv or .jsonl file, a folder of them, or an s3:// URI")
    kinds = {KINDS.get(p.suffix) for p in files}
    if None in kinds or len(kinds) != 1:
        raise ConfigError(
            f"--input {path}: one kind of file per transform, .csv or .jsonl ({', '.join(p.name for p in files)})"
        )
    kind = kinds.pop()
    if header and kind != "text/csv":
        raise ConfigError("--header is for CSV input: a JSON Lines file has no header")
    read = [InputFile(p, _read_lines(p, kind)) for p in files]
    empty = [f.path.name for f in read if not f.lines]
    if empty:
        raise ConfigError(f"--input {path}: {', '.join(empty)} holds no rows")
    return TransformInput(read, kind, header)


def stage(inputs: TransformInput, folder: Path) -> Path:
    """The rows to send, without a CSV's header, one file per input file."""
    folder.mkdir(parents=True)
    for item in inputs.files:
        (folder / item.path.name).write_text("\n".join(item.rows(bool(inputs.header))) + "\n")
    return folder
