"""`python -m lth.runs`: an alias of `lth runs` (lth.runs.index)."""
import sys

from lth.errors import cli_main
from lth.runs.index import main

sys.exit(cli_main(main))
