"""Which weights of any model are prunable, by module type, and which layer is the output layer.

    python -m lth.run --model timm:vit_tiny_patch16_224 --layers linear --layers-list   # print and exit

    rows = layers.describe(model)          # every candidate: name, kind, shape, numel, output?
    layers.select(model, "all_but_output") # the weight names a layer set picks (output layer last)

Kinds, by module type (so torchvision, timm and Hugging Face models resolve alike):
  conv        nn.Conv1d/2d/3d weights (grouped and depthwise too; a ViT's patch embedding)
  linear      nn.Linear weights outside attention modules (MLPs, classifier heads)
  attention   attention projections: nn.Linear inside a module whose class name contains
              "Attention" (timm's qkv/proj, Hugging Face's query/key/value/output.dense), and
              nn.MultiheadAttention's in_proj_weight (or q/k/v_proj_weight) and out_proj
  embedding   nn.Embedding tables (token, position, type embeddings): never picked unless the
              layer set says so (all_with_embeddings): pruning a token table removes words

Layer sets (--layers): all = conv + linear + attention; conv; linear = linear + attention;
attention; all_but_output = all minus the output layer (OpenLTH); all_with_embeddings.

The output layer (`@output` in --layer-rate): timm's `get_classifier()`, else the classifier
head by its conventional attribute (fc, classifier, head, heads, last_linear; Hugging Face
models: their `classifier`), else the last candidate registered. `check_output` verifies that
it produces the model's number of classes, so a model whose head cannot be found is a
one-line error rather than the wrong layer pruned at another rate.
"""
from typing import Dict, List, NamedTuple, Optional

from torch import nn

from lth.errors import LthError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
HEAD_ATTRIBUTES = ("fc", "classifier", "head", "heads", "last_linear")
LAYER_SETS = ("all", "conv", "all_but_output", "linear", "attention", "all_with_embeddings")
KINDS_OF = {"all": ("conv", "linear", "attention"), "conv": ("conv",), "all_but_output": ("conv", "linear", "attention"),
            "linear": ("linear", "attention"), "attention": ("attention",),
            "all_with_embeddings": ("conv", "linear", "attention", "embedding")}


class Candidate(NamedTuple):
    name: str            # the parameter's name in model.named_parameters()
    module_name: str
    module: nn.Module
    param: nn.Parameter
    kind: str


def _inside_attention(module_name: str, attention_prefixes: List[str]) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in attention_prefixes)


def candidates(model: nn.Module) -> List[Candidate]:
    """Every weight of a prunable kind, in registration order."""
    attention_prefixes = [name for name, m in model.named_modules()
                          if name and ("Attention" in type(m).__name__ or isinstance(m, nn.MultiheadAttention))]
    out = []
    for module_name, module in model.named_modules():
        def add(attr: str, kind: str):
            param = getattr(module, attr, None)
            if isinstance(param, nn.Parameter):
                out.append(Candidate(f"{module_name}.{attr}" if module_name else attr, module_name, module, param, kind))
        if isinstance(module, CONV_TYPES):
            add("weight", "conv")
        elif isinstance(module, nn.Linear):
            add("weight", "attention" if _inside_attention(module_name, attention_prefixes) else "linear")
        elif isinstance(module, nn.MultiheadAttention):
            for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
                add(attr, "attention")
        elif isinstance(module, nn.Embedding):
            add("weight", "embedding")
    return out


def output_layer(model: nn.Module, found: Optional[List[Candidate]] = None) -> Optional[Candidate]:
    """The classifier head (see the module docstring), or None for a model with no candidate."""
    found = candidates(model) if found is None else found
    heads = [c for c in found if c.kind in ("conv", "linear")]
    if not heads:
        return None
    by_module = {id(c.module): c for c in heads}
    get_classifier = getattr(model, "get_classifier", None)   # timm models
    if callable(get_classifier):
        try:
            head = get_classifier()
        except Exception:  # a model whose get_classifier is not timm's
            head = None
        if isinstance(head, nn.Module):
            inside = [by_module[id(m)] for m in head.modules() if id(m) in by_module]
            if inside:
                return inside[-1]
    for module_name, module in model.named_modules():
        if module_name.rsplit(".", 1)[-1] in HEAD_ATTRIBUTES and "." not in module_name.replace("net.", "", 1):
            inside = [by_module[id(m)] for m in module.modules() if id(m) in by_module]
            if inside:
                return inside[-1]
    return heads[-1]


def out_features(candidate: Candidate) -> int:
    return candidate.param.shape[0]


def check_output(model: nn.Module, num_classes: int, model_name: str) -> Candidate:
    """The output layer, refused with one line unless it produces `num_classes` outputs."""
    head = output_layer(model)
    if head is None or out_features(head) != num_classes:
        got = f"{head.name} has {out_features(head)} outputs" if head is not None else "it has no conv or linear layer"
        raise LthError(f"cannot find the output layer of model {model_name}: no classifier head with {num_classes} "
                       f"outputs ({got}); drop @output / --layers all_but_output, or name layers with --exclude")
    return head


def select(model: nn.Module, layers: str = "all") -> Dict[str, Candidate]:
    """The candidates of layer set `layers`, by parameter name, the output layer (if picked) last."""
    if layers not in KINDS_OF:
        raise LthError(f"unknown layer set {layers!r}; choose one of {', '.join(LAYER_SETS)}")
    found = candidates(model)
    head = output_layer(model, found)
    picked = [c for c in found if c.kind in KINDS_OF[layers]]
    if head is not None:
        if layers == "all_but_output":
            picked = [c for c in picked if c.name != head.name]
        elif any(c.name == head.name for c in picked):   # @output names the last layer (lth.pruning.targets)
            picked = [c for c in picked if c.name != head.name] + [head]
    return {c.name: c for c in picked}


def describe(model: nn.Module, layers: str = "all", exclude=()) -> List[dict]:
    """One row per candidate: name, kind, shape, numel, output (bool), pruned (by `layers`, `exclude`)."""
    import fnmatch
    found = candidates(model)
    head = output_layer(model, found)
    picked = set(select(model, layers))
    return [{"name": c.name, "kind": c.kind, "shape": list(c.param.shape), "numel": c.param.numel(),
             "output": head is not None and c.name == head.name,
             "pruned": c.name in picked and not any(fnmatch.fnmatchcase(c.name, p) for p in exclude)}
            for c in found]
