"""``python -m spri_graph.cli``: the ``spri`` command."""

import sys

from spri_graph.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
