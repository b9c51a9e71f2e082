"""Linear mode connectivity: interpolating between two networks (probe: in-place lerp into a
probe model, BatchNorm recomputation)."""
