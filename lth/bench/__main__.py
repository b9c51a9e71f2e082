"""`python -m lth.bench [all|masks|loader|train] [flags]`; see lth.bench for the commands."""
import sys

from lth.bench.cli import main
from lth.errors import cli_main

if __name__ == "__main__":
    sys.exit(cli_main(main))
