"""The lottery-ticket driver: rounds of rewind, train while pruning, save.

    assemble   model, data, masks and restart state from a resolved config (the run context)
    imp        the IMP driver (rounds)
    restart    round restart policies: rewind to W0 or W_k; continue (prune-retrain)
    rewinding  late rewinding's dense phase: W_k and the loader position (rewind.pt)
    execution  lth.execute(cfg): a whole run as a library call
    bimp       budgeted IMP and pruning-during-training baselines at one budget
"""
