"""`inv image.*`: theme images built and pushed by bin/gs-env-docker-build-push.sh (build.py); an app theme's app
served from its image (app.py)."""

from gs_ds_env.image.build import (
    CHECKOUT_LABEL,
    CONTENT_LABEL,
    THEME_LABEL,
    BuiltImage,
    PushPlan,
    build,
    build_push_command,
    identity,
    image_size,
    is_ours,
    push,
    push_plan,
)

__all__ = [
    "CHECKOUT_LABEL",
    "CONTENT_LABEL",
    "THEME_LABEL",
    "BuiltImage",
    "PushPlan",
    "build",
    "build_push_command",
    "identity",
    "image_size",
    "is_ours",
    "push",
    "push_plan",
]
