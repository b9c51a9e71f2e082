"""Studies: many runs as one unit of work, on one machine or a Ray cluster (issue 12).

    python -m lth.study table2 --scale cpu --jobs 2        # the paper's Table 2, CPU-sized
    python -m lth.study table2 --scale paper --dry-run     # its 216 cells and device-hours
    python -m lth.study my.toml status                     # done/running/failed/pending
    python -m analysis.tables table2 --scale cpu           # the table again, from the runs

Modules: spec (TOML and built-in studies), cells (cells -> configs -> run directories; the one
adapter onto lth's run), budget (Experiment B's budget axis), analyses (the one bridge into
the analysis package), plan (the task graph), tasks (what a worker does), executors (local,
ray), driver (the loop), state (state.json), report (status and listings), estimate
(device-hours), cli.
"""
