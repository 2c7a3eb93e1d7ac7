"""``python -m firmware_sim`` runs the ``anju-sim`` command line."""

import sys

from firmware_sim.cli import main

sys.exit(main())
