"""``python -m jarrn_deploy.runtime.bag``: the same command as ``jarrn bag``."""

import sys

from jarrn_deploy.runtime.bag.cli import main

sys.exit(main())
