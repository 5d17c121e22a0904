"""What serving raises about the model and its handler (one line each, the whole story)."""


class ModelLoadError(RuntimeError):
    """The model or its handler cannot be loaded; the message is the whole story (the container exits 1)."""


class HandlerError(RuntimeError):
    """A handler function returned something the server cannot send (a 500, with this one line)."""
