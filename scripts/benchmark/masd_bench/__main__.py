"""``python -m masd_bench``: the benchmark's command line; also how it starts its own helper processes
(``_sink``, ``_sockload``)."""

import sys

from masd_bench.cli import main

sys.exit(main())
