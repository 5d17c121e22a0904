"""The uvicorn worker gunicorn runs, with two guards of its own:

- the connections one worker holds are bounded (uvicorn's limit_concurrency: beyond GS_MAX_CONNECTIONS, a 503 at
  once), so clients that open connections and send nothing cannot exhaust it;
- gunicorn halts the whole server when a worker exits with 3 or 4 (its codes for "failed to boot" and "app failed
  to load"). After this worker has booted, a handler's os._exit(3) must end this worker only: gunicorn replaces it.
"""

from __future__ import annotations

import os

from uvicorn_worker import UvicornWorker

from .contract import ServingEnvironment

_BOOT_FAILURE_CODES = (3, 4)


class Worker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        "limit_concurrency": ServingEnvironment.from_environ().max_connections,
    }

    def run(self) -> None:
        real_exit = os._exit

        def exit_after_boot(code: int) -> None:
            real_exit(1 if code in _BOOT_FAILURE_CODES else code)

        os._exit = exit_after_boot
        return super().run()
