"""Channel granularity: groups of coupled channels, masking them, shrinking the network.

    groups = ChannelGroups(model, example_input, num_classes=10)
    groups.names, groups.sizes            # one group per root layer (its output channels)
    masker = groups.masker()              # lth.pruning.masks.Masks over every member tensor
    groups.mask(masker, pruned)           # pruned[g]: channel indices of group g to zero
    shrink(model, groups.by_name(pruned), example_input)   # physical removal (torch-pruning)

A group comes from torch-pruning's DepGraph (`get_all_groups`): a layer's output channels,
the matching input slices of every consumer, the BatchNorm that normalises them, merged across
residual additions (a ResNet stage is one group). The classifier (a Linear/Conv with
`num_classes` outputs) is never pruned; its input columns belong to the last group.
Where grouped convs (ResNeXt) take part, a group's units are conv-group positions, not single
channels (lth.pruning.grouped); an attention's heads are one group each, whatever DepGraph
coupled there (lth.pruning.heads: timm, Hugging Face, nn.MultiheadAttention); a transformer's
residual stream stays dense, and channels that run through an attention of another layout are
refused in one line. `sizes` count these units.

Masking a channel zeroes its whole coupled slice (conv/linear filters and biases, consumer
input slices, BatchNorm gamma and beta) with every shape kept, so the optimizer state,
rewinding and compiled graphs stay valid; the BatchNorm output of a masked channel is exactly
beta = 0, so removing the channel afterwards changes no output (tests/test_structured_channels.py).
"""
import copy
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch_pruning as tp
from torch import nn

from lth.errors import LthError
from lth.pruning import grouped, heads as heads_mod
from lth.pruning.masks import Masks

log = logging.getLogger(__name__)

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Member:
    """One tensor family of a group: `module`'s parameters along `dim`, at `target` indices,
    each belonging to root channel `root` (a flatten maps one channel to many columns)."""
    name: str            # module name in the model
    module: nn.Module
    out: bool            # output side (filters, BatchNorm) or input side (consumer slices)
    dim: int             # the weight dimension the indices run along
    target: torch.Tensor  # long: indices along `dim`
    root: torch.Tensor    # long: the group channel of each target index
    weight: str = "weight"   # the parameters' names on the module (nn.MultiheadAttention: in_proj_*)
    bias: str = "bias"

    @property
    def param(self) -> torch.Tensor:
        return getattr(self.module, self.weight)

    @property
    def is_norm(self) -> bool:
        return isinstance(self.module, NORMS)


@dataclass
class Group:
    name: str            # the root layer (its output channels define the group)
    size: int            # channels C
    members: List[Member]


def head_group(block: heads_mod.Block) -> Group:
    """The channel group whose channels are an attention block's heads (lth.pruning.heads)."""
    d, heads = block.head_dim, list(range(block.heads))
    members = []
    for p in block.producers:
        rows = torch.tensor(block.rows(p, heads), dtype=torch.long)
        members.append(Member(p.name, p.module, True, 0, rows, (rows % (block.heads * d)) // d, p.weight, p.bias))
    cols = torch.arange(block.heads * d, dtype=torch.long)
    members.append(Member(block.consumer[0], block.consumer[1], False, 1, cols, cols // d))
    return Group(block.name, block.heads, members)


def classifier_layers(model: nn.Module, num_classes: int) -> List[nn.Module]:
    """The output layers: Linear/Conv with `num_classes` outputs (OCSPruner's rule)."""
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes
             or isinstance(m, WEIGHTED[:3]) and m.out_channels == num_classes]
    if not found:
        raise LthError(f"no Linear or Conv layer with {num_classes} outputs: cannot tell the classifier apart")
    return found


def _member(name: str, module: nn.Module, out: bool, idxs, root_idxs) -> Optional[Member]:
    """The Member for one DepGraph item, None for parameter-free ops (ReLU, add, flatten)."""
    if not any(True for _ in module.parameters(recurse=False)):
        return None
    depthwise = isinstance(module, WEIGHTED[:3]) and module.groups == module.in_channels == module.out_channels
    # grouped (ResNeXt) convs: filters on the output side, input columns by conv-group position
    # (lth.pruning.grouped.tie maps the channel indices onto the weight's columns)
    if depthwise:   # issue 21 (MobileNet): channel i of a depthwise conv is its filter i, input or output side
        dim = 0
    elif isinstance(module, WEIGHTED):
        dim = 0 if out else 1
    elif isinstance(module, NORMS) and out:
        dim = 0
    else:
        raise LthError(f"layer {name} ({type(module).__name__}) has parameters that channel pruning does not "
                       f"handle; supported: Conv, Linear, BatchNorm")
    return Member(name, module, out, dim, torch.tensor(list(idxs), dtype=torch.long),
                  torch.tensor(list(root_idxs), dtype=torch.long))


class ChannelGroups:
    """The coupled channel groups of `model` (its modules, not copies: masks act in place)."""

    def __init__(self, model: nn.Module, example_input: torch.Tensor, num_classes: int):
        self.model = model
        names = {m: n for n, m in model.named_modules()}
        ignored = classifier_layers(model, num_classes)
        was_training = model.training
        model.eval()  # tracing runs a forward: keep BatchNorm running statistics untouched
        graph = tp.DependencyGraph().build_dependency(model, example_input, verbose=False)
        model.train(was_training)
        blocks = heads_mod.attention_blocks(model)   # issue 21: attention heads, whole, as groups
        producers = {p.module for b in blocks.values() for p in b.producers}
        self.groups: List[Group] = [head_group(b) for b in blocks.values() if not b.dense]
        for b in blocks.values():
            if b.dense:
                log.info("heads of %s left dense: %s", b.name, b.dense)
        for g in graph.get_all_groups(ignored_layers=ignored):
            root = g[0].dep.target.module
            if any(item.dep.target.module in producers and graph.is_out_channel_pruning_fn(item.dep.handler)
                   for item in g):
                continue   # a head block's channels: its head group stands for them
            if heads_mod.is_residual_stream(g):
                # A transformer's width (LayerNorm, token and position embeddings): it stays.
                log.info("channel group of %s left dense: a transformer's residual stream", names.get(root, "?"))
                continue
            if heads_mod.passes_attention(g):
                raise LthError(f"layer {names.get(root, '?')} feeds an attention whose layout lth does not recognise; "
                               f"structured pruning knows timm's Attention (qkv, proj, num_heads), Hugging Face "
                               f"BERT-style self-attention and nn.MultiheadAttention")
            members = []
            for item in g:
                module = item.dep.target.module   # a layer: is_residual_stream took free parameters
                if module not in names:   # torch-pruning's stand-ins for add, ReLU, flatten, cat
                    continue
                member = _member(names[module], module, graph.is_out_channel_pruning_fn(item.dep.handler),
                                 item.idxs, item.root_idxs)
                if member is not None:
                    members.append(member)
            size, members = grouped.tie(names[root], len(g[0].idxs), members)   # ResNeXt: positions
            self.groups.append(Group(names[root], size, members))
        if not self.groups:
            raise LthError("the model has no prunable channel group (only the classifier?)")
        self.groups.sort(key=lambda grp: grp.name)  # a stable order, whatever the tracing order

    @property
    def names(self) -> List[str]:
        return [g.name for g in self.groups]

    @property
    def sizes(self) -> List[int]:
        return [g.size for g in self.groups]

    def by_name(self, per_group: Sequence[torch.Tensor]) -> Dict[str, List[int]]:
        return {g.name: sorted(int(i) for i in idx) for g, idx in zip(self.groups, per_group)}

    def kept(self, pruned: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """The complement of `pruned` in every group, sorted."""
        out = []
        for g, idx in zip(self.groups, pruned):
            keep = torch.ones(g.size, dtype=torch.bool)
            keep[idx] = False
            out.append(keep.nonzero().flatten())
        return out

    # ---- saliency ------------------------------------------------------------------------
    @torch.no_grad()
    def saliency(self) -> List[torch.Tensor]:
        """Per channel: mean over the group's members of ||W_m[i]||^2 / sqrt(fan_m); for a
        BatchNorm member gamma_i^2 (no fan). fan_m = the number of weights in the slice of
        channel i (a filter's fan-in, a consumer slice's fan-out). Biases do not count."""
        scores = []
        for g in self.groups:
            total = torch.zeros(g.size, dtype=torch.float64)
            for m in g.members:
                w = m.param.detach().float()
                if m.is_norm:
                    per_index = w.pow(2)
                else:
                    dims = [d for d in range(w.dim()) if d != m.dim]
                    per_index = w.pow(2).sum(dim=dims)
                values = per_index[m.target.to(w.device)].double().cpu()
                sums = torch.zeros(g.size, dtype=torch.float64).index_add_(0, m.root, values)
                if not m.is_norm:
                    count = torch.zeros(g.size, dtype=torch.float64).index_add_(
                        0, m.root, torch.ones(len(m.root), dtype=torch.float64))
                    fan = count * (w.numel() / w.shape[m.dim])
                    sums = sums / fan.clamp_min(1).sqrt()
                total += sums
            scores.append(total / max(len(g.members), 1))
        return scores

    # ---- masking -------------------------------------------------------------------------
    def _tensors(self, weights_only: bool):
        """(group index, parameter name, parameter, member) for every member tensor; with
        weights_only the BatchNorm beta and the biases are left out (the shrink acts on weights)."""
        for gi, g in enumerate(self.groups):
            for m in g.members:
                yield gi, f"{m.name}.{m.weight}" if m.name else m.weight, m.param, m
                if not weights_only and m.out and getattr(m.module, m.bias, None) is not None:
                    yield gi, f"{m.name}.{m.bias}" if m.name else m.bias, getattr(m.module, m.bias), m

    def masker(self) -> Masks:
        """An all-ones lth.pruning.masks.Masks over every member parameter (weights, biases, BN)."""
        params = {name: p for _, name, p, _ in self._tensors(weights_only=False)}
        return Masks(params)

    def selector(self, pruned: Sequence[torch.Tensor], weights_only: bool) -> Dict[str, torch.Tensor]:
        """By parameter name: a 0/1 tensor shaped like the parameter, 1 on the slices of the
        channels in `pruned` (pruned[g] indexes group g)."""
        if len(pruned) != len(self.groups):
            raise LthError(f"{len(pruned)} channel selections for the model's {len(self.groups)} groups")
        out: Dict[str, torch.Tensor] = {}
        for gi, name, param, m in self._tensors(weights_only):
            sel = out.setdefault(name, torch.zeros_like(param, requires_grad=False))
            chosen = torch.zeros(self.groups[gi].size, dtype=torch.bool)
            chosen[torch.as_tensor(pruned[gi], dtype=torch.long)] = True
            idx = m.target[chosen[m.root]].to(param.device)
            dim = m.dim if param.dim() > 1 else 0
            sel.index_fill_(dim, idx, 1.0)
        return out

    @torch.no_grad()
    def mask(self, masker: Masks, pruned: Sequence[torch.Tensor]) -> None:
        """Set `masker` to zero every slice of the channels in `pruned`, zero those weights now
        and reset their BatchNorm running statistics (mean 0, var 1: finite, unused)."""
        sel = self.selector(pruned, weights_only=False)
        masker.load_state_dict({name: sel[name] == 0 for name in masker.names})
        masker.enforce()
        for g, idx in zip(self.groups, pruned):
            for m in g.members:
                if m.is_norm and m.module.running_mean is not None:
                    chosen = torch.zeros(g.size, dtype=torch.bool)
                    chosen[idx] = True
                    t = m.target[chosen[m.root]].to(m.module.running_mean.device)
                    m.module.running_mean.index_fill_(0, t, 0.0)
                    m.module.running_var.index_fill_(0, t, 1.0)


class TargetedShrink:
    """w <- w * (1 - lam * lr) on every member weight of the channels selected for pruning
    (conv/linear filters, consumer slices, BatchNorm gamma): OCSPruner's regularizer, applied
    after each optimizer step. One multi-tensor op a step."""

    def __init__(self, groups: ChannelGroups, pruned: Sequence[torch.Tensor]):
        sel = groups.selector(pruned, weights_only=True)
        params = {name: p for _, name, p, _ in groups._tensors(weights_only=True)}
        self.params = [params[n] for n in sel]
        self.selectors = [sel[n] for n in sel]

    @torch.no_grad()
    def apply(self, lam: float, lr: float) -> None:
        if lam > 0:
            torch._foreach_addcmul_(self.params, self.params, self.selectors, value=-lam * lr)


def shrink(model: nn.Module, pruned: Dict[str, Sequence[int]], example_input: torch.Tensor) -> nn.Module:
    """Remove the channels physically, in place (torch-pruning), and return `model`.
    pruned: root layer name -> channel indices of that group (as ChannelGroups.by_name)."""
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_input, verbose=False)
    for name, idxs in pruned.items():
        if not idxs:
            continue
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise LthError(f"no layer named {name!r} in the model: the kept channels belong to another model") from None
        block = heads_mod.block_of(model, name)
        if block is not None:   # issue 21: whole attention heads (the group's indices are heads)
            heads_mod.remove_heads(model, graph, block, list(idxs))
            continue
        pruner = graph.get_pruner_of_module(module)
        units = _units(graph, module, name)
        if max(idxs) >= units or len(set(idxs)) >= units:
            raise LthError(f"cannot remove channels {list(idxs)[:5]}... of layer {name}: its group has {units} "
                           f"channels{' (conv-group positions)' if units != pruner.get_out_channels(module) else ''}")
        channels = grouped.expand(idxs, pruner.get_out_channels(module), units)
        graph.get_pruning_group(module, pruner.prune_out_channels, channels).prune()
    model.train(was_training)
    return model


def _units(graph, module: nn.Module, name: str) -> int:
    """The prunable units of the group rooted at `module`: its output channels, or the
    conv-group positions where grouped convs take part (lth.pruning.grouped)."""
    pruner = graph.get_pruner_of_module(module)
    if pruner is None:
        raise LthError(f"cannot remove channels of layer {name}: torch-pruning has no pruner for "
                       f"{type(module).__name__}")
    size = pruner.get_out_channels(module)
    group = graph.get_pruning_group(module, pruner.prune_out_channels, list(range(size)))
    return grouped.period(name, size, grouped.grouped_counts_of(group))


def group_sizes(model: nn.Module, names: Sequence[str], example_input: torch.Tensor) -> Dict[str, int]:
    """By root layer name: the group's size as ChannelGroups counts it (heads, conv-group
    positions or channels), read from the model (an export checks its file against these)."""
    was_training = model.training
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_input, verbose=False)
    model.train(was_training)
    out = {}
    for name in names:
        block = heads_mod.block_of(model, name)
        if block is not None:
            out[name] = block.heads
            continue
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise LthError(f"no layer named {name!r} in the model") from None
        out[name] = _units(graph, module, name)
    return out


def count(model: nn.Module, example_input: torch.Tensor):
    """(FLOPs, parameters) by torch-pruning's counter (FLOPs = multiply-accumulates + the
    norm/activation/pool element ops, at the batch of `example_input`)."""
    flops, params = tp.utils.count_ops_and_params(model, example_input)
    return int(flops), int(params)


def shrunk_copy(model: nn.Module, pruned: Dict[str, Sequence[int]], example_input: torch.Tensor) -> nn.Module:
    return shrink(copy.deepcopy(model), pruned, example_input)
