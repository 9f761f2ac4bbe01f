"""``python -m genface`` runs the command line."""

import sys

from genface.cli import main

sys.exit(main())
