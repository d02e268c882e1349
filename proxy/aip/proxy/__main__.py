"""``python -m aip.proxy``: the same as the ``aip-proxy`` console script."""

import sys

from aip.proxy.cli import main

sys.exit(main())
