"""``python -m optix_core.cli``: the same as the ``optix`` command."""

import sys

from optix_core.cli import main

sys.exit(main())
