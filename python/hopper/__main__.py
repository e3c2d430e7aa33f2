"""`python -m hopper`: the same as the `hopper` command."""

import sys

from hopper.cli import main

sys.exit(main())
