"""Where and how wide a process trains: the device (cpu, cuda, cuda:N, auto) and its CPU threads."""
import torch

from lth.errors import LthError


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when present), cpu, cuda or cuda:N, with a one-line error otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LthError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise LthError(f"device {name}: lth runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LthError(f"device {name} requested but CUDA is not available here; use --device cpu")
    return device


def set_threads(threads: int) -> int:
    """Set this process's CPU intra-op threads (0: leave torch's default, one per core);
    returns the number in use. lth.execute and analysis.stability call it first."""
    if threads < 0:
        raise LthError(f"--threads must be >= 0 (0: torch's default), got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
