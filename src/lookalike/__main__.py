"""``python -m lookalike``: the ``lookalike`` command, for where its script is not on PATH."""

from lookalike.cli import main

main()
