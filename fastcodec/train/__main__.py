"""``python -m fastcodec.train``: the same as ``fastcodec train``."""

import sys

from fastcodec.train import main

sys.exit(main())
