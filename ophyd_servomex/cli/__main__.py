"""``python -m ophyd_servomex.cli``."""

import sys

from . import main

sys.exit(main())
