"""`inv kernel.*`: a theme's venv and Jupyter kernel (kernels.py: create, list, remove, restore, manifests), its lock
(locks.py), kernel-vs-image parity (parity.py) and the import check the kernel script runs (import_check.py)."""
