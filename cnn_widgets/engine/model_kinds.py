"""Compiled and TorchScript models: which module the engine explores, or why it cannot.

Every engine call puts hooks, backward rules or a torch-function mode on the model's layers: a
pass runs the model's own Python ``forward``, layer by layer.

- ``torch.compile(model)`` returns an ``OptimizedModule`` around the model. The engine explores
  the original module (``compiled._orig_mod``, the same parameters and buffers) and never runs the
  compiled graph: every engine pass captures layer outputs (a prediction's pass also fills the
  activation cache) or changes backward rules, which the compiled graph would have to recompile
  for (minutes on a CPU) or cannot run (a donated-buffer backward refuses the kept graph a second
  target reuses). Results are those of the eager model, which the compiled one computes too.
  The compiled object is never changed.
- A compiled module *inside* an eager model (``model.head = torch.compile(head)``, or
  ``module.compile()`` in place) would run compiled under the engine's hooks: refused, naming it.
- TorchScript (``torch.jit.script`` / ``torch.jit.trace``) runs its own compiled graph, in which
  Python hooks and modified backward rules cannot run: refused, naming it, with what to pass.
"""

from __future__ import annotations

from torch import nn

from .errors import ModelError


def _is_script(module: nn.Module) -> bool:
    import torch.jit

    return isinstance(module, torch.jit.ScriptModule)


def _script_name(module: nn.Module) -> str:
    """``"RecursiveScriptModule of ResNet"``: the TorchScript type and the class it was made from."""
    original = getattr(module, "original_name", None)
    return f"{type(module).__name__} of {original}" if original else type(module).__name__


def _is_compiled(module: nn.Module) -> bool:
    """An ``OptimizedModule`` from ``torch.compile`` (found by its ``_orig_mod``; importing dynamo is slow)."""
    return type(module).__name__ == "OptimizedModule" and isinstance(getattr(module, "_orig_mod", None), nn.Module)


def explored_module(model: nn.Module) -> nn.Module:
    """The eager module the engine explores for ``model`` (``model`` itself, or a compiled model's
    original module); a :class:`ModelError` for a TorchScript model or a compiled part inside one."""
    if _is_compiled(model):
        model = model._orig_mod
    if _is_script(model):
        raise ModelError(
            f"{_script_name(model)} is a TorchScript module (torch.jit.script / torch.jit.trace); cnn_widgets "
            "puts hooks and modified backward rules on the layers, which cannot run inside TorchScript. Pass the "
            "eager nn.Module it was scripted or traced from (e.g. cw.Network(model) instead of "
            "cw.Network(torch.jit.script(model)))"
        )
    for name, module in model.named_modules():
        if name and _is_script(module):
            raise ModelError(
                f"{type(model).__name__}.{name} is a TorchScript module ({_script_name(module)}); cnn_widgets puts "
                "hooks and modified backward rules on the layers, which cannot run inside TorchScript. Build the "
                f"model with the eager module at {name!r} (the one it was scripted or traced from)"
            )
        if name and _is_compiled(module) or getattr(module, "_compiled_call_impl", None) is not None:
            where = f"{type(model).__name__}.{name}" if name else type(model).__name__
            how = "torch.compile" if _is_compiled(module) else ".compile() in place"
            raise ModelError(
                f"{where} was compiled ({how}), so it would run compiled code under cnn_widgets' hooks and backward "
                "rules; pass the model without compiled parts: compile the whole model with torch.compile(model), "
                "which leaves the module itself eager (cnn_widgets then explores its original module), or pass "
                "the uncompiled model"
            )
    return model
