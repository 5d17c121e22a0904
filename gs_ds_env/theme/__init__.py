"""`inv theme.*`: a theme of your own from a template (`new`), what every theme has built (`list`), and removing a
theme made here (`remove`). Templates are data: themes/_templates/<template>/.

names.py: what a theme may be called; new.py: a template (or a theme) -> a locked theme; check.py: a theme's
kernel, image, parity and example checked end to end; catalog.py: the list; remove.py: removing what new made."""

from gs_ds_env.errors import ThemeError

__all__ = ["ThemeError"]
