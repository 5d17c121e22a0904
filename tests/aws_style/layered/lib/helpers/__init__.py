"""A dependency folder (the SDK's `dependencies=[...]`): copied beside the entry point, importable as `helpers`."""

SCALE = 10.0


def scaled(rows):
    return [[value / SCALE for value in row] for row in rows]
