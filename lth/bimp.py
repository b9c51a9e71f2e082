"""`python -m lth.bimp`: an alias of `lth bimp` (lth.lottery.bimp)."""
import sys

from lth.lottery.bimp import main
from lth.training import distributed

if __name__ == "__main__":
    sys.exit(distributed.cli_main_then_leave(main))
