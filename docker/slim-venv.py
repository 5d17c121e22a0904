"""Leave out of an image's venv what no import in that image can reach, keeping every package and version of the lock.

Run by docker/Dockerfile in the same step that installs the venv (so the removed bytes never form a layer):

  - the packages' own test suites (`tests/` folders, the extension modules only their tests import: numpy's
    `_*_tests` and `_simd`, scipy's `_test_*`), and the modules that import pytest or hypothesis at their top when
    the image has neither (their import fails: e.g. xgboost.testing). Not `test/` folders nor `conftest.py` files:
    some are runtime modules (graphene.test, beartype._conf.conftest);
  - what only a compiler reads or drives (C/C++/Cython sources and headers, static archives, numpy's distutils:
    the image has no compiler) and what only a type checker reads (`.pyi` stubs); Windows launchers (`.exe`); botocore's `examples-1.json`
    (read only when botocore's reference documentation is generated);
  - the symbol tables of shared libraries (`strip --strip-unneeded`, as Debian packages them: the dynamic symbols
    the loader needs stay; only libraries that carry a symbol table are rewritten);
  - identical copies of a file (wheels vendor their libraries, e.g. numpy's and scipy's libgfortran; pip vendors
    idna): one file, hard-linked.

And botocore's and boto3's remaining plain `.json` data is stored gzipped, as botocore already ships its service
models: its loader reads either (`.json`, then `.json.gz`).

Prints one line per kind (files, MB). Python's standard library only; `strip` comes from binutils (skipped, and
said, where it is absent).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

REMOVED_DIRS = {"tests"}
REMOVED_SUFFIXES = {".c", ".cc", ".cpp", ".h", ".hpp", ".pyx", ".pxd", ".pxi", ".a", ".pyi", ".exe"}
# botocore/data/<service>/<version>/examples-1.json: documentation examples only.
REMOVED_NAMES = {"examples-1.json"}
TEST_EXTENSIONS = re.compile(r"^(_\w+_tests|_test_\w+)\.[\w-]+\.so$")
TEST_ONLY_MODULES = {"numpy/_core/_simd"}  # numpy's harness for testing its SIMD dispatch
TEST_FRAMEWORK_IMPORT = re.compile(rb"^(?:import|from) (pytest|_pytest|hypothesis)\b", re.MULTILINE)
GZIPPED_DATA = ("botocore/data", "boto3/data")
BUILD_ONLY = ("numpy/distutils",)  # numpy's build system for compiled extensions (gone from Python 3.12 on)
ELF_MAGIC = b"\x7fELF"


def elf_symbol_bytes(path: Path) -> int | None:
    """Bytes of the symbol table and debug sections of a 64-bit little-endian ELF file; None if it is not one."""
    with path.open("rb") as file:
        header = file.read(64)
        if len(header) < 64 or header[:4] != ELF_MAGIC or header[4] != 2 or header[5] != 1:
            return None
        (section_offset,) = struct.unpack_from("<Q", header, 0x28)
        entry_size, count, names_index = struct.unpack_from("<HHH", header, 0x3A)
        if not count or entry_size < 64:
            return 0
        file.seek(section_offset)
        table = file.read(entry_size * count)
        sections = [struct.unpack_from("<IIQQQQ", table, i * entry_size) for i in range(count)]
        file.seek(sections[names_index][4])
        names = file.read(sections[names_index][5])
    total = 0
    for name_offset, _, _, _, _, size in sections:
        name = names[name_offset : names.find(b"\0", name_offset)]
        if name in (b".symtab", b".strtab") or name.startswith(b".debug"):
            total += size
    return total


def shared_objects(root: Path):
    for path in root.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            yield path


def remove_unreachable(site_packages: Path) -> tuple[int, int]:
    files = size = 0
    for package in BUILD_ONLY:
        for path in (site_packages / package).rglob("*"):
            if path.is_file():
                files, size = files + 1, size + path.stat().st_size
        shutil.rmtree(site_packages / package, ignore_errors=True)
    absent = {name for name in (b"pytest", b"_pytest", b"hypothesis") if not (site_packages / name.decode()).is_dir()}
    for module in sorted(site_packages.rglob("*.py"), reverse=True):
        found = module.is_file() and TEST_FRAMEWORK_IMPORT.search(module.read_bytes())
        if found and found.group(1) in absent:
            for path in module.parent.rglob("*") if module.name == "__init__.py" else [module]:
                if path.is_file():
                    files, size = files + 1, size + path.stat().st_size
            if module.name == "__init__.py":
                shutil.rmtree(module.parent)
            else:
                module.unlink()
    for directory in sorted(site_packages.rglob("*"), reverse=True):
        if directory.is_dir() and not directory.is_symlink() and directory.name in REMOVED_DIRS:
            for path in directory.rglob("*"):
                if path.is_file():
                    files, size = files + 1, size + path.stat().st_size
            shutil.rmtree(directory)
    for path in list(site_packages.rglob("*")):
        if path.is_file() and is_unreachable(path, site_packages):
            files, size = files + 1, size + path.stat().st_size
            path.unlink()
    return files, size


def is_unreachable(path: Path, site_packages: Path) -> bool:
    if path.suffix in REMOVED_SUFFIXES or path.name in REMOVED_NAMES or TEST_EXTENSIONS.match(path.name):
        return True
    module = path.relative_to(site_packages).as_posix().split(".", 1)[0]
    return path.suffix == ".so" and module in TEST_ONLY_MODULES


def gzip_data(site_packages: Path) -> tuple[int, int]:
    files = saved = 0
    for folder in GZIPPED_DATA:
        for path in sorted((site_packages / folder).rglob("*.json")):
            packed = path.with_name(path.name + ".gz")
            if packed.exists():
                continue
            with gzip.GzipFile(packed, "wb", compresslevel=9, mtime=0) as out:
                out.write(path.read_bytes())
            files, saved = files + 1, saved + path.stat().st_size - packed.stat().st_size
            path.unlink()
    return files, saved


# os._exit: some libraries' destructors call Python after it has finalized (an abort that says nothing of loading).
LOAD_CHECK = """
import ctypes, os, sys
for line in sys.stdin:
    try:
        ctypes.CDLL(line.rstrip("\\n"))
    except OSError:
        print(line, end="")
sys.stdout.flush()
os._exit(0)
"""


def not_loading(paths: list[Path]) -> set[Path]:
    """The libraries the dynamic loader refuses, each tried in a child process of this Python (a crash refuses all)."""
    checked = subprocess.run(
        [sys.executable, "-c", LOAD_CHECK], input="".join(f"{path}\n" for path in paths),
        capture_output=True, text=True,
    )  # fmt: skip
    if checked.returncode != 0:
        return set(paths)
    return {Path(line) for line in checked.stdout.splitlines()}


# Libraries are stripped and checked in batches of about this many bytes: the originals kept until a batch is checked
# are the step's only extra disk (a torch venv holds ~2.5 GB of libraries with symbol tables).
BATCH_BYTES = 1_000_000_000


def strip_symbols(site_packages: Path, strip: str) -> tuple[int, int, int]:
    """strip --strip-unneeded each library that has a symbol table and loads; a library that no longer loads after it
    (strip cannot rewrite some libraries patchelf edited, as auditwheel does) is put back as it was.
    (stripped, bytes saved, put back)."""
    candidates = [path for path in shared_objects(site_packages) if elf_symbol_bytes(path)]
    refused_before = not_loading(candidates)
    batch: list[Path] = []
    stripped = saved = kept = 0
    for path in [path for path in candidates if path not in refused_before] + [None]:
        if path is not None:
            batch.append(path)
        if batch and (path is None or sum(member.stat().st_size for member in batch) >= BATCH_BYTES):
            done, batch_saved, batch_kept = _strip_batch(batch, strip)
            stripped, saved, kept, batch = stripped + done, saved + batch_saved, kept + batch_kept, []
    return stripped, saved, kept


def _strip_batch(batch: list[Path], strip: str) -> tuple[int, int, int]:
    originals: dict[Path, tuple[Path, int]] = {}
    for path in batch:
        stripped = path.with_name(path.name + ".gs-stripped")
        if subprocess.run([strip, "--strip-unneeded", "-o", str(stripped), str(path)], capture_output=True).returncode:
            stripped.unlink(missing_ok=True)
            continue
        original = path.with_name(path.name + ".gs-unstripped")
        path.replace(original)  # a rename: the original's bytes are not copied
        stripped.replace(path)
        originals[path] = (original, original.stat().st_size)
    kept = 0
    while broken := not_loading(list(originals)):
        for path in broken:
            originals.pop(path)[0].replace(path)
        kept += len(broken)
    saved = sum(size - path.stat().st_size for path, (_, size) in originals.items())
    for original, _ in originals.values():
        original.unlink()
    return len(originals), saved, kept


def link_duplicates(site_packages: Path) -> tuple[int, int]:
    by_size: dict[int, list[Path]] = {}
    for path in site_packages.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size:
            by_size.setdefault(path.stat().st_size, []).append(path)
    files = saved = 0
    for size, paths in by_size.items():
        first_by_digest: dict[str, Path] = {}
        for path in sorted(paths) if len(paths) > 1 else ():
            original = first_by_digest.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
            if original != path and not original.samefile(path):
                linked = path.with_name(path.name + ".gs-link")
                os.link(original, linked)
                linked.replace(path)
                files, saved = files + 1, saved + size
    return files, saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", type=Path, help="the venv to slim, e.g. /opt/venv")
    args = parser.parse_args(argv)
    site_packages = sorted(args.venv.glob("lib/python3*/site-packages"))
    if not site_packages:
        parser.error(f"{args.venv} has no lib/python3*/site-packages: pass the venv's root")
    for packages in site_packages:
        files, size = remove_unreachable(packages)
        print(f"slim: removed {files} files no import reaches ({size / 1e6:.1f} MB)")
        strip = shutil.which("strip")
        if strip:
            files, size, kept = strip_symbols(packages, strip)
            print(f"slim: stripped the symbol tables of {files} shared libraries ({size / 1e6:.1f} MB)")
            if kept:
                print(f"slim: {kept} libraries do not load once stripped and were kept as they were")
        else:
            print("slim: no strip (binutils) here: symbol tables kept")
        files, size = gzip_data(packages)
        print(f"slim: {files} botocore/boto3 data files gzipped ({size / 1e6:.1f} MB)")
        files, size = link_duplicates(packages)
        print(f"slim: {files} identical copies of files hard-linked ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
