"""``fuse(model)``: replaces Conv2d -> ReLU -> MaxPool2d/AvgPool2d chains with
:class:`ConvReLUPool2d` and Conv2d -> ReLU -> PixelShuffle chains with
:class:`ConvReLUUpsample2d`.

How chains are found:

* **Traceable models** (``torch.fx`` symbolic tracing succeeds): the graph is searched for
  ``call_module(Conv2d)`` -> ReLU -> pool / pixel shuffle, where the ReLU may be ``nn.ReLU``
  (``inplace`` or not), ``F.relu``/``torch.relu`` (and the in-place ``_`` forms) or
  ``Tensor.relu``; the pool ``nn.MaxPool2d``/``nn.AvgPool2d``/``F.max_pool2d``/
  ``torch.max_pool2d``/``F.avg_pool2d``; the shuffle ``nn.PixelShuffle``/``F.pixel_shuffle``.
  A chain is fused only when each intermediate value has no other user (the graph is the
  ground truth of the dataflow, however the modules are called). Then:

  - if every chain found is made of three *modules* each called exactly once (nn.Sequential
    stacks, or ``self.conv1 / self.relu1 / self.pool1`` attributes), the model keeps its class:
    the conv's slot gets the fused module and the ReLU's and pool's slots get ``nn.Identity``
    (so child indices and state_dict keys stay those of the original). The search looks at
    ``forward`` only: another method that calls those modules one by one (e.g. ``conv`` then
    ``relu`` without the pool) computes something else afterwards;
  - otherwise (functional forms, a chain's module called twice or registered under two names) the
    result is a ``torch.fx.GraphModule`` holding all of the model's children, parameters and
    buffers, whether forward uses them or not, where the fused module takes the conv's place and
    the replaced ReLU / pool modules become ``nn.Identity``: the state_dict keys are the model's
    (plus, for a conv fused at several call sites, those of its extra fused modules, which share
    its parameters). A GraphModule is not an instance of the model's class: methods other than
    ``forward`` (and class attributes) are not kept.

* **Models fx cannot trace**: only ``nn.Sequential`` containers (recursively; subclasses that
  override ``forward`` are left alone) are rewritten, three consecutive children ``Conv2d, ReLU,
  pool`` becoming ``fused, Identity, Identity``. This assumes such a container is called as a
  whole (its ``forward``), not child by child.

Chains the fused ops cannot express (groups, dilation, padding_mode, stride 3, kernel > 7, pool
stride != window, ceil_mode, hooks, parametrizations, ...) are left as they are; so is
everything else.
"""

from __future__ import annotations

import copy
import inspect
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from .modules import ConvReLUPool2d, ConvReLUUpsample2d

__all__ = ["fuse"]

_FUSED = (ConvReLUPool2d, ConvReLUUpsample2d)


def fuse(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Returns ``model`` with its fusable conv chains replaced by fused modules.

    Args:
        model: any module. Its outputs are unchanged (up to floating-point rounding of the
            fused kernels; exactly with the torch backend).
        inplace: rewrite ``model`` itself instead of a deep copy (when the result is a
            GraphModule it is built on ``model``'s submodules and ``model`` is left as is).

    Returns:
        The model, of its own class, when nothing was fused or every chain was made of
        modules (see the module docstring); else a ``torch.fx.GraphModule`` with the model's
        children, parameters and buffers but only its ``forward`` (not its other methods). Fused
        modules share the parameters of the convolutions they replace.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse expects an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    if isinstance(model, _FUSED):
        return model
    try:
        tracer = _Tracer()
        graph = tracer.trace(model)
    except Exception:  # not traceable by fx: the Sequential pass is all we can do
        _fuse_sequentials(model)
        return model
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    uses: Dict[str, int] = {}
    for n in gm.graph.nodes:
        if n.op == "call_module":
            uses[n.target] = uses.get(n.target, 0) + 1
    matches = _find_matches(gm)
    if not matches:
        return model
    names = _name_counts(model)
    if all(_is_module_chain(m, uses, model, names) for m in matches):
        for m in matches:
            _set_submodule(model, m.conv.target, m.fused)
            _set_submodule(model, m.relu.target, nn.Identity())
            _set_submodule(model, m.tail.target, nn.Identity())
        return model
    _keep_hierarchy(gm, model)
    _rewrite_graph(gm, matches, uses)
    return gm


# --------------------------------------------------------------------------------------------
# Fallback for untraceable models: nn.Sequential containers
# --------------------------------------------------------------------------------------------


def _try_fuse_modules(conv, relu, last) -> Optional[nn.Module]:
    if not (isinstance(conv, nn.Conv2d) and isinstance(relu, nn.ReLU)):
        return None
    try:
        if isinstance(last, nn.PixelShuffle):
            return ConvReLUUpsample2d.from_modules(conv, relu, last)
        if isinstance(last, (nn.MaxPool2d, nn.AvgPool2d)):
            return ConvReLUPool2d.from_modules(conv, relu, last)
    except (ValueError, TypeError):
        return None
    return None


def _fuse_sequentials(module: nn.Module) -> int:
    count = 0
    for child in module.children():
        count += _fuse_sequentials(child)
    if not isinstance(module, nn.Sequential) or type(module).forward is not nn.Sequential.forward:
        return count
    keys = list(module._modules.keys())
    i = 0
    while i + 2 < len(keys):
        a, b, c = (module._modules[k] for k in keys[i : i + 3])
        fused = _try_fuse_modules(a, b, c)
        if fused is None:
            i += 1
            continue
        fused.train(a.training)
        module._modules[keys[i]] = fused
        module._modules[keys[i + 1]] = nn.Identity()
        module._modules[keys[i + 2]] = nn.Identity()
        count += 1
        i += 3
    return count


# --------------------------------------------------------------------------------------------
# torch.fx
# --------------------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """Keeps already-fused modules as leaves (their forward validates real tensors)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _FUSED):
            return True
        return super().is_leaf_module(m, module_qualified_name)


_RELU_FUNCTIONS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}
_MAX_POOL_FUNCTIONS = {F.max_pool2d, torch.max_pool2d}
_AVG_POOL_FUNCTIONS = {F.avg_pool2d}
_SHUFFLE_FUNCTIONS = {F.pixel_shuffle, torch.pixel_shuffle}


def _sig_max_pool2d(
    input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False
):
    pass


def _sig_avg_pool2d(
    input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
    divisor_override=None,
):
    pass


def _sig_pixel_shuffle(input, upscale_factor):
    pass


def _sig_relu(input, inplace=False):
    pass


def _bind(sig_fn, node: fx.Node) -> Optional[Dict]:
    try:
        bound = inspect.signature(sig_fn).bind(*node.args, **node.kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def _is_relu_of(node: fx.Node, src: fx.Node, modules) -> Tuple[bool, Optional[nn.ReLU]]:
    """Whether ``node`` computes relu(src); returns (ok, the nn.ReLU module or None)."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if (
            isinstance(m, nn.ReLU)
            and type(m).forward is nn.ReLU.forward
            and node.args == (src,)
            and not node.kwargs
        ):
            return True, m
        return False, None
    if node.op == "call_function" and node.target in _RELU_FUNCTIONS:
        args = _bind(_sig_relu, node)
        return (args is not None and args["input"] is src), None
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return (node.args == (src,) and not node.kwargs), None
    return False, None


def _as_tail_module(node: fx.Node, src: fx.Node, modules) -> Optional[nn.Module]:
    """The pooling / pixel-shuffle module equivalent to ``node`` applied to ``src``."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.PixelShuffle)) and node.args == (src,) \
                and not node.kwargs:
            return m
        return None
    if node.op != "call_function":
        return None
    try:
        if node.target in _MAX_POOL_FUNCTIONS:
            a = _bind(_sig_max_pool2d, node)
            if a is None or a["input"] is not src:
                return None
            stride = a["stride"]
            if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
                stride = None
            return nn.MaxPool2d(
                a["kernel_size"], stride, a["padding"], a["dilation"],
                return_indices=bool(a["return_indices"]), ceil_mode=bool(a["ceil_mode"]),
            )
        if node.target in _AVG_POOL_FUNCTIONS:
            a = _bind(_sig_avg_pool2d, node)
            if a is None or a["input"] is not src:
                return None
            stride = a["stride"]
            if isinstance(stride, (list, tuple)) and len(stride) == 0:
                stride = None
            return nn.AvgPool2d(
                a["kernel_size"], stride, a["padding"], bool(a["ceil_mode"]),
                bool(a["count_include_pad"]), a["divisor_override"],
            )
        if node.target in _SHUFFLE_FUNCTIONS:
            a = _bind(_sig_pixel_shuffle, node)
            if a is None or a["input"] is not src or not isinstance(a["upscale_factor"], int):
                return None
            return nn.PixelShuffle(a["upscale_factor"])
    except (TypeError, ValueError):  # arguments that are graph values, odd types, ...
        return None
    return None


def _only_user(node: fx.Node) -> Optional[fx.Node]:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    *path, name = target.split(".")
    parent = root.get_submodule(".".join(path)) if path else root
    setattr(parent, name, module)


class _Match(NamedTuple):
    conv: fx.Node
    relu: fx.Node
    tail: fx.Node
    fused: nn.Module


def _find_matches(gm: fx.GraphModule) -> List[_Match]:
    modules = dict(gm.named_modules())
    matches = []
    for conv_node in gm.graph.nodes:
        if conv_node.op != "call_module":
            continue
        conv = modules.get(conv_node.target)
        if not isinstance(conv, nn.Conv2d) or len(conv_node.args) != 1 or conv_node.kwargs:
            continue
        relu_node = _only_user(conv_node)
        if relu_node is None:
            continue
        ok, relu = _is_relu_of(relu_node, conv_node, modules)
        if not ok:
            continue
        tail_node = _only_user(relu_node)
        if tail_node is None:
            continue
        tail = _as_tail_module(tail_node, relu_node, modules)
        if tail is None:
            continue
        try:
            if isinstance(tail, nn.PixelShuffle):
                fused = ConvReLUUpsample2d.from_modules(conv, relu, tail)
            else:
                fused = ConvReLUPool2d.from_modules(conv, relu, tail)
        except (ValueError, TypeError):
            continue
        fused.train(conv.training)
        matches.append(_Match(conv_node, relu_node, tail_node, fused))
    return matches


def _name_counts(model: nn.Module) -> Dict[int, int]:
    """id(module) -> how many names it has in ``model`` (a module can be registered twice)."""
    counts: Dict[int, int] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        counts[id(m)] = counts.get(id(m), 0) + 1
    return counts


def _is_module_chain(
    m: _Match, uses: Dict[str, int], root: nn.Module, names: Dict[int, int]
) -> bool:
    """All three are modules called once and registered under one name only: replacing them in
    place (fused, Identity, Identity) is then exactly the graph rewrite. (fx calls a module by its
    first name; a second name, e.g. ``self.stem`` and ``self.features[0]``, would keep the old
    module where forward calls it.)"""
    return all(
        n.op == "call_module"
        and uses.get(n.target) == 1
        and names.get(id(root.get_submodule(n.target))) == 1
        for n in (m.conv, m.relu, m.tail)
    )


def _keep_hierarchy(gm: fx.GraphModule, root: nn.Module) -> None:
    """Gives ``gm`` all of ``root``'s children, parameters and buffers (fx keeps only those
    forward uses), in ``root``'s order: the same state_dict keys. The children are ``root``'s own;
    :func:`_set_own_submodule` copies a container before changing it. Tensors only fx added
    (plain tensor attributes forward reads) stay as non-persistent buffers."""
    for attr in ("_parameters", "_buffers", "_modules"):
        merged = dict(getattr(root, attr))
        extra = {k: v for k, v in getattr(gm, attr).items() if k not in merged}
        merged.update(extra)
        gm.__dict__[attr] = merged
        if attr == "_buffers":
            gm._non_persistent_buffers_set = set(root._non_persistent_buffers_set) | set(extra)


def _set_own_submodule(root: nn.Module, target: str, module: nn.Module, owned: set) -> None:
    """``_set_submodule`` that first replaces each container on the path by a shallow copy (once:
    ``owned`` holds the ids of the copies), so the modules ``root`` shares with the original
    model are left as they are."""
    *path, name = target.split(".")
    parent = root
    for p in path:
        child = parent._modules[p]
        if id(child) not in owned:
            child = copy.copy(child)
            for attr in ("_parameters", "_buffers", "_modules"):
                child.__dict__[attr] = dict(getattr(child, attr))
            owned.add(id(child))
            parent._modules[p] = child
        parent = child
    setattr(parent, name, module)


def _rewrite_graph(gm: fx.GraphModule, matches: List[_Match], uses: Dict[str, int]) -> None:
    graph = gm.graph
    names = {n for n, _ in gm.named_modules(remove_duplicate=False)}
    owned: set = set()
    fused_calls: Dict[str, int] = {}
    for m in matches:
        fused_calls[m.conv.target] = fused_calls.get(m.conv.target, 0) + 1
    replaced = []  # the ReLU / pool modules of the fused chains
    for m in matches:
        t = m.conv.target
        if fused_calls[t] == uses.get(t):
            name = t  # every call of the conv is fused: the first takes its place (same keys)
            fused_calls[t] = 0  # the others get new names
        else:
            base = t.replace(".", "_") + "_fused"
            name, i = base, 1
            while name in names or hasattr(gm, name):
                name, i = f"{base}_{i}", i + 1
        names.add(name)
        _set_own_submodule(gm, name, m.fused, owned)
        replaced += [n.target for n in (m.relu, m.tail) if n.op == "call_module"]
        with graph.inserting_before(m.tail):
            new = graph.call_module(name, (m.conv.args[0],))
        new.meta = dict(m.tail.meta)
        m.tail.replace_all_uses_with(new)
        for n in (m.tail, m.relu, m.conv):
            graph.erase_node(n)
    graph.lint()
    # Replaced ReLU / pool modules that nothing calls any more: Identity (child indices kept).
    called = {n.target for n in graph.nodes if n.op == "call_module"}
    for target in replaced:
        if target not in called:
            _set_own_submodule(gm, target, nn.Identity(), owned)
    gm.recompile()
