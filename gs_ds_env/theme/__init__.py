"""`inv theme`: a theme of your own from a template (`new`), what every theme has built (`list`), and removing a
theme made here (`remove`). Templates are data: themes/_templates/<template>/."""


class ThemeError(RuntimeError):
    """A theme operation refused or failed; the message says what is wrong and how to fix it. Nothing was left."""
