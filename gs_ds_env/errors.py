"""One base for every error this project raises on purpose (as the training toolkit's errors.py has one): its
message is the whole story in one line (what is wrong, what to do), its exit code says who must act. The task
layer (tasks/common.py) turns a GsError into that line and that code; anything else is a bug and keeps its
traceback.

exit 2: the input is wrong (an option, a setting, a file the user gave) and nothing was started;
exit 1: something ran and failed (a build, a job, an AWS call, a server)."""

from __future__ import annotations


class GsError(Exception):
    """A failure with a one-line message; exit code 1."""

    exit_code = 1


class InputError(GsError, ValueError):
    """Bad input, refused before anything ran; exit code 2."""

    exit_code = 2


class ThemeError(GsError):
    """A theme operation refused or failed; the message says what is wrong and how to fix it. Nothing was left."""


class ServeError(GsError):
    """The model cannot be served or an endpoint did not answer; the message says why and what to do."""


class WorkspaceError(GsError):
    """A workspace (lab, dev container, Studio image) step failed; the message says which and why."""
