"""``python -m fastcodec.bench``: the same as ``fastcodec bench``."""

import sys

from fastcodec.bench.command import main

sys.exit(main())
