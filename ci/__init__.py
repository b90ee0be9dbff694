"""fabship's quality gates: `python -m ci` (see README, "Gates")."""
