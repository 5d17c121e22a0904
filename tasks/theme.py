"""`inv theme.*` — Themes: your own from a template, one verdict on a theme, the list, removal."""

from __future__ import annotations

from invoke import task

from gs_ds_env.settings import load_settings

from .common import clear_errors, group


@task(
    name="new",
    help={
        "name": "the new theme's name (lowercase letters, digits, '-'; at most 32 characters)",
        "template": "ds (default), de, mlops or app: a folder of themes/_templates/",
        "from": "copy this theme instead of a template",
        "python": "its default Python 3.N (default: PY)",
        "add": "one more requirement for its image and kernel, repeatable, e.g. --add 'polars>=1.0' --add duckdb",
        "description": "one line saying what it is for",
    },
    iterable=["add"],
)
@clear_errors
def theme_new(c, name, template=None, from_=None, python=None, add=None, description=None):
    """Create themes/NAME from a template or a theme, compile its lock, print the next commands."""
    from gs_ds_env.theme import new

    created = new.create(load_settings(), name, template, from_, python, add, description)
    print(f"created themes/{created.name}/ ({created.origin}, {created.kind} theme, Python {created.python}); next:")
    print("\n".join(f"  {step}" for step in created.next_steps()))


@task(name="check", help={"name": "the theme", "py": "Python 3.N (default: PY)"})
@clear_errors
def theme_check(c, name, py=None):
    """One verdict: lock up to date, kernel and image build with their smoke test, parity, the example as a job."""
    from gs_ds_env.theme import check

    log = check.check(load_settings(theme=name, py=py))
    print(f"theme {name}: every check passed (log: {log})")


@task(name="list")
@clear_errors
def theme_list(c):
    """Every theme: kind, default Python, lock age, kernels and images built here, description."""
    from gs_ds_env.theme import catalog

    print(catalog.format_table(catalog.rows(load_settings())))


@task(
    name="remove",
    help={
        "name": "a theme made by inv theme.new",
        "dry_run": "print what would be removed and what is kept",
        "force": "remove it even while one of its kernels runs (the kernel then breaks)",
    },
)
@clear_errors
def theme_remove(c, name, dry_run=False, force=False):
    """Remove what `inv theme.new` made (its kernels and venv, its images, its files); your own files stay."""
    from gs_ds_env.theme import remove

    settings = load_settings()
    steps, kept = remove.plan(settings, name, force=force)
    print("\n".join(f"{'would remove' if dry_run else 'remove'}: {step.what}" for step in steps), flush=True)
    if kept:
        print(f"{'would keep' if dry_run else 'keep'}: {kept}", flush=True)
    if not dry_run:
        remove.execute(settings, steps)


namespace = group("theme", ("new", theme_new), ("check", theme_check), ("list", theme_list), ("remove", theme_remove))
