"""lth.bench: how fast lth's engine trains, masks, loads and interpolates (`lth bench`;
the commands and flags are lth.bench.cli's)."""
from lth.bench.cli import main, run

__all__ = ["main", "run"]
