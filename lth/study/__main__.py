"""`python -m lth.study SPEC [status] [--scale cpu|paper] [--dry-run] [--executor local|ray]`."""
import sys

from lth.errors import cli_main
from lth.study.cli import main

if __name__ == "__main__":  # spawned workers import this module too: they must not run the CLI
    sys.exit(cli_main(main))
