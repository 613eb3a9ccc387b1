"""``python -m fastcodec.cli``: the same as the ``fastcodec`` command."""

import sys

from fastcodec.cli import main

sys.exit(main())
