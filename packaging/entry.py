"""Entry point of the single-file executable (`make binary`): the `hopper` command."""

import multiprocessing
import sys

from hopper.cli import main

if __name__ == "__main__":
    # Granian's workers are processes; a frozen program must let a spawned child run
    # its target instead of the command line (a no-op under the default fork).
    multiprocessing.freeze_support()
    sys.exit(main())
