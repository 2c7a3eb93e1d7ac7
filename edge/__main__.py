"""``python -m edge`` is ``anju-edge``."""

import sys

from edge.cli import main

sys.exit(main())
