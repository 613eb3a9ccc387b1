"""``python -m fastcodec.evaluate``: the same as ``fastcodec eval``."""

import sys

from fastcodec.evaluate.command import main

sys.exit(main())
