"""``python -m aip.approver``: run the approval agent."""

import sys

from aip.approver.cli import main

sys.exit(main())
