"""``python -m tradehall`` is the same as the ``tradehall`` command."""

import sys

from tradehall.cli import main

sys.exit(main())
