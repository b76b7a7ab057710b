"""``python -m nabat`` is the ``nabat`` command."""

from .cli import main

main()
