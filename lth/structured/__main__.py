import sys

from lth.errors import cli_main
from lth.structured.cli import main

sys.exit(cli_main(main))
