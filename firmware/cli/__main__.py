"""``python -m ilmpq.firmware.cli``: the same as the ``ilmpq`` command."""

import sys

from . import main

sys.exit(main())
