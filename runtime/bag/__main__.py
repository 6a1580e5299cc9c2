"""``python -m runtime.bag``: the same command as ``jarrn bag``."""

import sys

from runtime.bag.cli import main

sys.exit(main())
