"""``python -m benchmarks``: run every benchmark module and print one table."""

import sys

from ._harness import main

sys.exit(main())
