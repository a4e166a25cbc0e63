"""`python -m modeling_qface.cli`: the `qface` command."""

import sys

from . import main

sys.exit(main())
