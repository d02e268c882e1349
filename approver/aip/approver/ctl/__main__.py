"""``python -m aip.approver.ctl``: the same program as the ``aipctl`` command."""

import sys

from aip.approver.ctl.main import main

sys.exit(main())
