"""``python -m ncbench`` is the ``ncbench`` command."""

import sys

from .cli import main

sys.exit(main())
