"""`python -m lth.bimp`: an alias of `lth bimp` (lth.lottery.bimp)."""
import sys

from lth.errors import cli_main
from lth.lottery.bimp import main

if __name__ == "__main__":
    sys.exit(cli_main(main))
