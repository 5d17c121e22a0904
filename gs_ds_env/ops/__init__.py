"""`inv ops.*`: `inv doctor` (doctor.py), `inv clean` (clean.py) and the preflight before a paid job
(preflight.py); checks.py is the one checked fact both print; leftovers.py finds what a killed command left running."""
