"""``python -m metacoop`` runs the command line."""

from metacoop.cli import main

main()
