"""``python -m scheduler.cli``: the ``valley`` command from a checkout."""

from scheduler.cli import main

main()
