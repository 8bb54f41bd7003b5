"""``python -m fbnas ...`` (and ``torchrun --nproc_per_node N -m fbnas ...``): the command line."""

import sys

from fbnas.cli import main

sys.exit(main())
