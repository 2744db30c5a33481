"""Run by tests/test_tensorrt_api.py in a subprocess that can import NVIDIA's TensorRT bindings.

Prints a JSON list of the TensorRT attributes and calls in rtsr/backends/tensorrt.py that the
imported bindings do not have or would not accept (empty when every use conforms).
"""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import tensorrt_bindings as trt

from rtsr.backends import tensorrt as backend

# the TensorRT class each receiver in rtsr/backends/tensorrt.py holds ("trt" is the module)
RECEIVERS = {
    "trt": trt,
    "builder": trt.Builder,
    "network": trt.INetworkDefinition,
    "parser": trt.OnnxParser,
    "config": trt.IBuilderConfig,
    "opt_profile": trt.IOptimizationProfile,
    "timing": trt.ITimingCache,
    "config.get_timing_cache()": trt.ITimingCache,
    "self._runtime": trt.Runtime,
    "self.engine": trt.ICudaEngine,
    "ctx": trt.IExecutionContext,
}


def _params(doc: str, name: str) -> list[list[str]]:
    """Parameter names after self of each pybind11 overload of `name`, read from its docstring."""
    overloads = []
    for line in doc.splitlines():
        m = re.match(rf"\s*(?:\d+\. )?{re.escape(name)}\((.*)\) ->", line)
        if m:
            params = [p.split(":")[0].strip() for p in re.split(r",\s*(?![^\[]*\])", m.group(1)) if p.strip()]
            overloads.append([p for p in params if p not in ("self", "*args", "**kwargs")])
    return overloads


def _call_problem(target: object, name: str, call: ast.Call, where: str) -> str | None:
    """A call with more positional arguments, or keywords, than any overload of `name` takes."""
    doc = getattr(target, "__doc__", None) or ""
    overloads = _params(doc, name)
    if not overloads:
        return None  # a Python-level or property access: existence was the check
    n_pos, keys = len(call.args), {k.arg for k in call.keywords}
    if any(n_pos <= len(p) and keys <= set(p[n_pos:]) for p in overloads):
        return None
    return f"{where}: {ast.unparse(call)} matches no signature of {name}: {overloads}"


def problems(source: str) -> list[str]:
    found = []
    tree = ast.parse(source)
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        receiver = ast.unparse(node.value)
        owner = RECEIVERS.get(receiver)
        if owner is None and receiver.startswith("trt."):  # trt.Logger.WARNING, trt.IProgressMonitor.__init__
            owner = trt
            for part in receiver.split(".")[1:]:
                owner = getattr(owner, part, None)
        if owner is None:
            continue
        where = f"line {node.lineno}"
        if not hasattr(owner, node.attr):
            found.append(f"{where}: TensorRT {trt.__version__} has no {receiver}.{node.attr}")
            continue
        call = calls.get(id(node))
        if call is not None and receiver in RECEIVERS and receiver != "trt":
            problem = _call_problem(getattr(owner, node.attr), node.attr, call, where)
            if problem:
                found.append(problem)
    # constructors called as trt.X(...)
    for call in calls.values():
        if isinstance(call.func, ast.Attribute) and ast.unparse(call.func.value) == "trt":
            cls = getattr(trt, call.func.attr, None)
            if isinstance(cls, type):
                problem = _call_problem(cls.__init__, "__init__", call, f"line {call.lineno}")
                if problem:
                    found.append(problem)
    monitor = backend._progress_monitor(trt, backend.BuildProgress())
    if not isinstance(monitor, trt.IProgressMonitor):
        found.append("the progress monitor is not a trt.IProgressMonitor")
    return found


if __name__ == "__main__":
    json.dump(problems(Path(backend.__file__).read_text()), sys.stdout)
