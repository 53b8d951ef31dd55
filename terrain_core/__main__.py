"""``python -m terrain_core generate|info``: see terrain_core.cli."""

import sys

from terrain_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
