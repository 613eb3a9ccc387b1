"""``python -m fastcodec.kernels.check``: runs the check (see the package docstring)."""

import sys

from fastcodec.kernels.check import main

if __name__ == "__main__":
    sys.exit(main())
