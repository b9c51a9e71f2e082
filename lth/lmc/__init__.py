"""Linear mode connectivity: interpolating between two networks.

    from lth import lmc
    lmc.interpolate(state_a, state_b, alphas=11, evaluate=my_eval, model=model)   # lth.lmc.curve

probe: in-place lerp into a probe model, BatchNorm recomputation (what analysis.stability and
lth.bench share); curve: the curve, instability error and barrier of any two checkpoints."""
from lth.lmc.curve import BN_MODES, grid, interpolate, summarise

__all__ = ["BN_MODES", "grid", "interpolate", "summarise"]
