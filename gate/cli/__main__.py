"""`python -m gate.cli`: the same as the `gate` console script."""

import sys

from gate.cli import main

sys.exit(main())
