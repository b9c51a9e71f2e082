"""Structured (channel) pruning in one training cycle: OCSPruner and the in-round schedules.

    python -m lth.structured --method ocspruner --flops-rr 0.5       # stability-triggered (cli.py)

Modules: config (the dataclass and flags), stability (Jaccard score, psi, lambda), context
(groups + FLOPs model + selection), methods / ocspruner / scheduled (what each method does
per epoch and step), loop (training around them), export (the shrunk network file, costs,
latency), store (the run directory). Channel groups, masking and selection live in
lth.pruning.channels and lth.pruning.channel_select.
"""
