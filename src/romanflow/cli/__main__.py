"""``python -m romanflow.cli``: the ``romanflow`` command."""

import sys

from romanflow.cli import main

sys.exit(main())
