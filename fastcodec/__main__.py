import sys

from fastcodec.cli import main

sys.exit(main())
