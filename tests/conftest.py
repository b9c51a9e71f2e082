"""Shared test settings.

One intra-op thread: the tests run many tiny ops, and on a 2-core machine that is also
running something else, OpenMP's spin-waiting barriers can make them 10-50x slower.
"""
import torch

torch.set_num_threads(1)


# ---- fault counts (tests/test_faults.py, via runhelpers.record_fault) -------------------------
def pytest_terminal_summary(terminalreporter):
    """Print how many times each fault was inflicted and with what outcome, so the numbers can
    be quoted; also write them as JSON to $LTH_FAULT_LOG when that is set."""
    import json
    import os
    import sys
    helpers = sys.modules.get("runhelpers")
    if helpers is None or not helpers.FAULTS:
        return
    counts = {kind: dict(outcomes) for kind, outcomes in sorted(helpers.FAULTS.items())}
    terminalreporter.write_sep("-", "faults inflicted (kind: outcome x count)")
    for kind, outcomes in counts.items():
        terminalreporter.write_line(f"{kind}: " + ", ".join(f"{o} x{n}" for o, n in sorted(outcomes.items())))
    if os.environ.get("LTH_FAULT_LOG"):
        with open(os.environ["LTH_FAULT_LOG"], "w") as f:
            json.dump(counts, f, indent=1, sort_keys=True)
