"""User-facing errors: one clear line, exit code 2, never a traceback.

Raise `LthError` for anything the user can fix (bad flag, missing data, corrupted file).
`cli_main` wraps an entry point so that such errors print one line on stderr.
"""
import argparse
import logging
import os
import re
import sys

EXIT_USAGE = 2          # bad input: the user can fix it
EXIT_INTERRUPTED = 130  # Ctrl-C, conventional 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # stdout closed by its reader, conventional 128 + SIGPIPE


class LthError(Exception):
    """An error whose message is complete on its own (names the value and what is allowed)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit code 2 (no usage dump), like every
    lth error. Abbreviated flags are refused: `--epoch 3` must not silently mean `--epochs`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        # "argument --steps: --steps must be >= 1, got 0" -> the range check's own line names the flag once
        message = re.sub(r"^argument ([^:]+): (?=\1\b)", "", message)
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def cli_main(main, argv=None) -> int:
    """Run `main(argv)`; turn LthError into one line on stderr and exit code 2, Ctrl-C into 130."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return main(argv) or 0
    except LthError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside the places that say more (lth.run's rounds)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as e:  # argparse's --help (0) and its one-line usage errors (2), for in-process callers
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except BrokenPipeError:  # the reader went away (`lth runs list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_BROKEN_PIPE
