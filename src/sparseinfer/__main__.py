"""``python -m sparseinfer`` runs the command line."""

import sys

from sparseinfer.cli import main

sys.exit(main())
