"""`python -m fabship init`: the same as the `fabship` command."""
import sys

from .main import main

sys.exit(main())
