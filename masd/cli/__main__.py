"""``python -m masd.cli``: the same command line as the ``masd`` console script."""

from masd.cli import main

main()
