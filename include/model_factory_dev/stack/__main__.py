"""``python -m model_factory_dev.stack up|down|status|demo|run``."""

import sys

from model_factory_dev.stack.cli import main

sys.exit(main())
