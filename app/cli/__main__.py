"""``python -m app.cli``: the same as the ``punchclock`` console script."""

import sys

from app.cli.main import main

sys.exit(main())
