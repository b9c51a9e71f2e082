"""`python -m lth.bench ddp` (issue 22): bad input is one line before any rank starts; (slow)
N = 1, 2 gloo ranks on the CPU give a rate per rank and a scaling efficiency.

    python -m pytest tests/test_bench_ddp.py -q -m "slow or not slow"
"""
import math

import pytest

from lth import bench
from lth.errors import EXIT_USAGE, cli_main

TINY = ["ddp", "--device", "cpu", "--synthetic", "--models", "lenet300_100", "--steps", "2", "--batch-size", "8"]


@pytest.mark.parametrize("extra,message", [
    (["--ranks", "0"], "--ranks must be >= 1, got 0"),
    (["--ranks", "1", "3"], "--batch-size 8 does not split over 3 ranks"),
])
def test_bad_ranks_are_one_line(capsys, extra, message):
    assert cli_main(bench.main, TINY + extra) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.slow
def test_one_and_two_ranks_report_rates_and_efficiency(tmp_path):
    lines = []
    report = bench.run(TINY + ["--ranks", "1", "2", "--json", str(tmp_path / "ddp.json")], out=lines.append)
    rows = report["results"]["ddp"]["rows"]
    assert [r["ranks"] for r in rows] == [1, 2] and [len(r["rates"]) for r in rows] == [1, 2]
    assert [r["per_rank_batch"] for r in rows] == [8, 4]
    assert all(math.isfinite(x) and x > 0 for r in rows for x in r["rates"])
    assert rows[0]["efficiency"] == 1.0 and 0 < rows[1]["efficiency"] < 4
    assert "scaling eff." in lines[1] and (tmp_path / "ddp.json").exists()
