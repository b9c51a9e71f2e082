"""analysis: what the IMP runs found, measured and drawn. Reads run directories only through
lth's store API, trains with lth.training.loop; lth never imports it, except the study layer's one
bridge (lth/study/analyses.py), which runs these analyses as study tasks.

    python -m analysis.stability RUN_DIR [RUN_DIR ...]     # measure tickets, draw Fig. 3 and Table 4
    python -m analysis.figures [RUN_DIR ...] [--out DIR]    # redraw; always Fig. 1 and 2

Modules, one idea each:
  settings     what a measurement depends on; the result layout and file names
  tickets      the starting point of each kind: ticket, reinit and random controls
  copies       training one copy of a ticket with its mask fixed (resumable)
  interpolate  in-place interpolation between two copies, BatchNorm modes, the error curve
  measure      one measurement: reuse or train the copies, interpolate, save the record
  stability    `python -m analysis.stability`: choosing rounds, locking, sharing work, the table
  ranks        under torchrun: rank 0 decides what the files say and alone writes
  results      saved results read back and summarised over runs
  tables       Table 4 as Markdown, LaTeX and CSV
  figures      `python -m analysis.figures`: Fig. 1, 2 and 3 as PDF, PNG and CSV
  cli          the flags and run/round selection both commands share
"""
