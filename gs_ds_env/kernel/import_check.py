"""`python -m gs_ds_env.kernel.import_check ROOT`: can this interpreter find every package this project's modules import
when they load? Run by the kernel script in a theme venv that holds the project (theme.env KERNEL_WITH_PROJECT).

It reads the module-level imports (what `import gs_ds_env.…` executes) and looks each one up without importing
it: importing the stack in a fresh venv compiles its bytecode (~6 s for the tabular theme), and the smoke test
imports the theme's own packages anyway. Imports inside functions are what their callers need, not the kernel.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

# The project's own code, as the kernel sees it (the editable install puts both on sys.path).
SOURCES = ("gs_ds_env/**/*.py", "training/titanic/*.py")
OWN = {"gs_ds_env", "titanic", "__future__"}


def module_level_imports(path: Path) -> set[str]:
    """The top-level package names `path` imports when it loads."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - OWN


def missing(root: Path) -> dict[str, str]:
    """package -> the first module (relative to root) that imports it, for each package this interpreter lacks."""
    absent: dict[str, str] = {}
    for path in sorted(p for pattern in SOURCES for p in root.glob(pattern)):
        for name in sorted(module_level_imports(path)):
            if name not in absent and importlib.util.find_spec(name) is None:
                absent[name] = str(path.relative_to(root))
    return absent


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gs_ds_env.kernel.import_check PROJECT_ROOT", file=sys.stderr)
        return 2
    absent = missing(Path(argv[0]))
    if absent:
        listed = ", ".join(f"{name} (imported by {module})" for name, module in absent.items())
        print(f"not installed: {listed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
