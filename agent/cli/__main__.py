"""`python -m agent.cli`: the `lineside` command, for a source tree without the console script."""

import sys

from agent.cli.main import main

sys.exit(main())
