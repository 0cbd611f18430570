"""``python -m jaxpo`` runs the ``jaxpo`` command line."""

import sys

from .cli import main

sys.exit(main())
