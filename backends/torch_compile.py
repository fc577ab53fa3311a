"""PyTorch with ``torch.compile`` (TorchDynamo + Inductor) on CPU or CUDA.

Compiling happens in ``prepare``: the first time a shape is seen, the compiled model runs once on it
and, when that call compiled a graph, its seconds count as compile time. The timed ``run`` then only
replays graphs that already exist, and ``describe`` reports what compiling cost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from backends.pytorch import PyTorchBackend, load_transformers, model_input_filter
from harness.adapters import Artifact, Options, Session

# Per-width compiles one graph per distinct (batch, width); dynamo's default limit of 8 graphs per
# code object would silently run every later shape in eager. A cell's shapes are bounded by its
# batches, so the limit is lifted rather than tuned.
RECOMPILE_LIMIT = 1_000_000
# modes whose graphs are replayed as CUDA graphs (on CUDA only): they record on a shape's 2nd call
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")


class TorchCompileOptions(Options):
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    # torch._inductor.config.freezing: weights become constants (folded, prepacked for oneDNN)
    freezing: bool = True
    # marked: the sequence dimension is symbolic, one graph per batch size; per-width: static shapes
    dynamic: Literal["marked", "per-width"] = "marked"


def _dynamo_config_name(config: Any, *names: str) -> str:
    """The first of ``names`` this torch's dynamo config has (limits were renamed across versions)."""
    for name in names:
        if hasattr(config, name):
            return name
    raise AttributeError(f"torch._dynamo.config has none of {names}")


class CompiledSession(Session):
    def __init__(self, model: Any, device: str, options: TorchCompileOptions) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.device = device
        self.options = options
        self.takes = model_input_filter(model)
        # dynamic=False keeps shapes static (no automatic-dynamic recompile after a 2nd width);
        # mark_dynamic still makes the marked dimension symbolic.
        self.compiled = torch.compile(model, mode=options.mode, dynamic=False)
        self.cudagraphs = device.startswith("cuda") and options.mode in CUDAGRAPH_MODES
        self.seen: set[tuple[int, ...]] = set()
        self.compile_s = 0.0
        self.graphs = 0

    def prepare(self, batch: Mapping[str, np.ndarray]) -> dict[str, Any]:
        prepared = {k: self.torch.from_numpy(v).to(self.device) for k, v in batch.items() if self.takes(k)}
        if self.options.dynamic == "marked":
            for tensor in prepared.values():
                # size 0/1 dimensions are always specialised by dynamo: marking them would fail
                if tensor.dim() >= 2 and tensor.shape[1] >= 2:
                    self.torch._dynamo.mark_dynamic(tensor, 1)
        shape = tuple(next(iter(prepared.values())).shape)
        if shape not in self.seen:
            # every new shape, not only a new batch size: a marked graph's guards may still reject a
            # width, and cudagraphs record per shape; either must happen here, not under the clock
            self._first_calls(prepared, shape)
            self.seen.add(shape)
        return prepared

    def _first_calls(self, prepared: dict[str, Any], shape: tuple[int, ...]) -> None:
        from torch._dynamo.utils import counters

        before = counters["stats"]["unique_graphs"]
        with self._compile_config():
            begin = time.perf_counter()
            self.run(prepared)
            self.synchronize()
            # CUDA graph trees run a shape's 1st call eagerly and record on the 2nd
            for _ in range(2 if self.cudagraphs else 0):
                self.run(prepared)
                self.synchronize()
            elapsed = time.perf_counter() - begin
        compiled = counters["stats"]["unique_graphs"] - before
        if compiled > 0:
            self.compile_s += elapsed
            self.graphs += compiled
        elif self.options.dynamic == "per-width":
            raise RuntimeError(
                f"torch.compile compiled no graph for new shape {shape} with static shapes: "
                "dynamo reused another graph or fell back to eager, so this cell would not measure per-width"
            )

    @contextmanager
    def _compile_config(self) -> Iterator[None]:
        """Settings that only matter while compiling, patched around the calls in ``prepare`` so
        sessions with different options can share a process."""
        import torch._inductor.config as inductor_config

        config = self.torch._dynamo.config
        limit = _dynamo_config_name(config, "recompile_limit", "cache_size_limit")
        accumulated = _dynamo_config_name(config, "accumulated_recompile_limit", "accumulated_cache_size_limit")
        dynamo_patch: dict[str, Any] = {limit: RECOMPILE_LIMIT, accumulated: RECOMPILE_LIMIT}
        if hasattr(config, "fail_on_recompile_limit_hit"):
            dynamo_patch["fail_on_recompile_limit_hit"] = True  # raise instead of silently running eager
        with config.patch(dynamo_patch), inductor_config.patch(freezing=self.options.freezing):
            yield

    def run(self, prepared: dict[str, Any]) -> Any:
        if self.cudagraphs:  # the previous call's outputs may be overwritten from here on
            self.torch.compiler.cudagraph_mark_step_begin()
        # inference_mode in both prepare and run: dynamo guards on grad mode, and freezing needs it off
        with self.torch.inference_mode():
            return self.compiled(**prepared).logits

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize(self.device)

    def logits(self, output: Any) -> np.ndarray:
        return output.float().cpu().numpy()

    def close(self) -> None:
        del self.compiled, self.model
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        return {
            "compile_s": round(self.compile_s, 3),
            "recompiles": self.graphs,  # graphs compiled, the first one included
            "shapes": len(self.seen),
            "dynamic": self.options.dynamic,
            "mode": self.options.mode,
            "freezing": self.options.freezing,
        }


class TorchCompileBackend(PyTorchBackend):
    """The eager backend's availability, GEMM peak and model loading, with compiled sessions."""

    name = "torch-compile"
    formats = frozenset({"transformers", "transformers-bf16"})
    # Inductor generates kernels per shape, so a row's logits may differ in the last bits with the
    # batch's width or composition: one scoring cannot stand in for every shape
    keeps_batch_invariance = False
    Options = TorchCompileOptions
    # the eager backend's imports, with this module instead of its own
    preload = (
        *[m for m in PyTorchBackend.preload if m.startswith("transformers") or m == "torch"],
        "backends.torch_compile",
    )

    def cell_unavailable_reason(self, artifact_format: str, device: str) -> str | None:
        if artifact_format == "transformers-bf16":
            from harness.environment import bf16_unavailable_reason

            return bf16_unavailable_reason(device)
        return None

    def load(self, artifact: Artifact, device: str, threads: int, options: Options | None = None) -> CompiledSession:
        import torch

        if options is None:
            options = TorchCompileOptions()
        if not isinstance(options, TorchCompileOptions):
            raise TypeError(f"{self.name} takes {TorchCompileOptions.__name__}, not {type(options).__name__}")
        # set before compiling: Inductor's CPU kernels take their OpenMP thread count at codegen
        torch.set_num_threads(threads)
        return CompiledSession(load_transformers(artifact).eval().to(device), device, options)


BACKEND = TorchCompileBackend()
