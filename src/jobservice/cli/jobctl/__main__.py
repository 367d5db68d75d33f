"""`python -m jobservice.cli.jobctl`, the same as the `jobctl` console script."""

import sys

from jobservice.cli.jobctl import main

sys.exit(main())
