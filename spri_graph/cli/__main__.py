"""``python -m spri_graph.cli``: the ``spri`` command."""

import sys

from spri_graph.cli import main

__all__: list[str] = []

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
