"""`inv notebook`: run a notebook top to bottom on its theme's kernel with nbclient, as CI does.

The committed notebook stays without outputs; the executed copy goes to runs/notebooks/<name>.ipynb, also when
a cell fails (the copy shows where)."""

from __future__ import annotations

from pathlib import Path

from gs_ds_env.errors import GsError
from gs_ds_env.settings import ConfigError, Settings


class NotebookFailed(GsError):
    """A cell raised; the message names the cell and the executed copy."""


def theme_of(notebook: Path) -> str | None:
    """The theme a notebook is written for: its kernelspec name is <theme>_<pyver>."""
    import nbformat

    name = nbformat.read(notebook, as_version=4).metadata.get("kernelspec", {}).get("name", "")
    return name.rsplit("_", 1)[0] or None


def execute(settings: Settings, notebook: Path, timeout: int = 1800) -> Path:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if not notebook.is_file():
        raise ConfigError(f"notebook {notebook} does not exist: e.g. notebooks/titanic-sagemaker.ipynb")
    kernel = settings.kernel_name
    if kernel not in KernelSpecManager().find_kernel_specs():
        raise ConfigError(
            f"there is no Jupyter kernel {kernel}: create it with `make kernel THEME={settings.theme} PY={settings.py}`"
        )
    document = nbformat.read(notebook, as_version=4)
    executed = settings.paths.runs / "notebooks" / notebook.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(
        document, kernel_name=kernel, timeout=timeout, resources={"metadata": {"path": str(settings.repo_root)}}
    )
    print(f"running {notebook.name} on kernel {kernel} ({len(document.cells)} cells)", flush=True)
    try:
        client.execute()
    except CellExecutionError as error:
        raise NotebookFailed(
            f"{notebook.name}: a cell failed with {error.ename}: {error.evalue} (the executed copy: {executed})"
        ) from None
    except (CellTimeoutError, DeadKernelError) as error:
        raise NotebookFailed(f"{notebook.name}: {str(error).splitlines()[0]} (the executed copy: {executed})") from None
    finally:
        nbformat.write(document, executed)
    print(f"executed copy: {executed}", flush=True)
    return executed
