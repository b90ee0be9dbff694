"""`python -m ci`: run the quality gates."""
import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
