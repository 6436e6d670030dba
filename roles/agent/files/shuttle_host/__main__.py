"""`python3 -m shuttle_host`: the same command as the entry script the agent role installs."""

import sys

from shuttle_host.cli import main

sys.exit(main())
