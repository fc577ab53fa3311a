"""ONNX Runtime static INT8 (QDQ): activation ranges calibrated on train sentences, weights per channel.

Only MatMul/Gemm (and Conv) inputs are quantized. The numerically fragile parts of a BERT-like graph (LayerNorm,
GELU, the attention-mask Add, the embedding Adds) stay float; ``excluded_nodes`` finds them by graph
structure, so any architecture optimum exports is covered without node-name lists.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from exporters._common import copy_tokenizer, export_onnx, max_pooled_matmuls
from exporters._ort import ORT_ONLY_FORMAT, fuse_transformer_graph, ort_model_type
from harness.adapters import CalibrationData, Exporter, Options

# Conv: the lightweight CNN student's convolutions (a transformer graph has none)
QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")
LAYERNORM_OPS = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                 "SkipSimplifiedLayerNormalization", "EmbedLayerNormalization", "RMSNormalization"}  # fmt: skip
GELU_OPS = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu"}
METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}  # CalibrationMethod names
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Tanh", "ReduceMean", "Cast", "Reciprocal"}


class OrtStaticInt8Options(Options):
    method: Literal["minmax", "percentile", "entropy"] = "minmax"
    samples: int = Field(256, ge=1, le=100_000)
    batch_size: int = Field(8, ge=1, le=1024)
    percentile: float = Field(99.999, gt=0.0, le=100.0)
    per_channel: bool = True
    optimize: bool = False


class _Graph:
    """Producer/consumer indexes of an ONNX graph."""

    def __init__(self, model: Any) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        # initializers, Constant nodes and anything computed from them alone (exports alias shared
        # LayerNorm weights through Identity nodes)
        self.constants = {t.name for t in graph.initializer}
        for node in self.nodes:  # ONNX graphs are topologically sorted
            if all(i in self.constants for i in node.input if i):
                self.constants.update(node.output)
        float_types = (1, 10, 16)  # TensorProto FLOAT, FLOAT16, BFLOAT16
        self.float_tables = {t.name for t in graph.initializer if t.data_type in float_types and len(t.dims) == 2}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node, name in ((n, i) for n in self.nodes for i in n.input):
            self.consumers[name].append(node)

    def variable_inputs(self, node: Any) -> list[str]:
        return [i for i in node.input if i and i not in self.constants]

    def only_consumer(self, tensor: str, op_type: str) -> Any | None:
        found = self.consumers.get(tensor, [])
        return found[0] if len(found) == 1 and found[0].op_type == op_type else None

    def descendants(
        self, tensors: Iterable[str], through: set[str] | None = None, stop: frozenset[str] = frozenset()
    ) -> set[str]:
        """Names of nodes reachable from ``tensors`` (only via ``through`` op types when given, never
        past ``stop`` op types)."""
        seen: set[str] = set()
        frontier = list(tensors)
        while frontier:
            for node in self.consumers.get(frontier.pop(), []):
                if node.name not in seen and (through is None or node.op_type in through):
                    seen.add(node.name)
                    frontier.extend(node.output if node.op_type not in stop else ())
        return seen

    def between(self, source: str, sink: Any) -> set[str]:
        """Elementwise nodes on a path from tensor ``source`` to node ``sink`` (inclusive)."""
        below = self.descendants([source], ELEMENTWISE)
        region, frontier = set(), [sink]
        while frontier:
            node = frontier.pop()
            if node.name in region or node.name not in below:
                continue
            region.add(node.name)
            frontier.extend(self.producer[i] for i in node.input if i != source and i in self.producer)
        return region


def _decomposed_layernorms(g: _Graph) -> set[str]:
    # (x - mean(x)) / sqrt(mean((x - mean)^2) + eps) * gamma + beta, as opsets < 17 export it
    found: set[str] = set()
    for mean in (n for n in g.nodes if n.op_type == "ReduceMean"):
        x = mean.input[0]
        for sub in g.consumers.get(mean.output[0], []):
            if sub.op_type != "Sub" or list(sub.input) != [x, mean.output[0]]:
                continue
            for div in (n for n in g.consumers.get(sub.output[0], []) if n.op_type == "Div"):
                tail, last = g.between(sub.output[0], div) | {mean.name, sub.name}, div
                for op_type in ("Mul", "Add"):  # the affine gamma and beta
                    nxt = g.only_consumer(last.output[0], op_type)
                    if nxt is not None and len(g.variable_inputs(nxt)) == 1:
                        tail.add(nxt.name)
                        last = nxt
                found |= tail
    return found


def _decomposed_gelus(g: _Graph) -> set[str]:
    # x * 0.5 * (1 + erf(x / sqrt 2)) or the tanh approximation, in either order of the products
    found: set[str] = set()
    for core in (n for n in g.nodes if n.op_type in ("Erf", "Tanh")):
        one_plus = g.only_consumer(core.output[0], "Add")
        if one_plus is None or len(g.variable_inputs(one_plus)) != 1:
            continue
        chain, tensor = [], one_plus.output[0]
        while (mul := g.only_consumer(tensor, "Mul")) is not None and len(chain) < 2:
            chain.append(mul)
            tensor = mul.output[0]
        others = [i for m in chain for i in g.variable_inputs(m) if i != one_plus.output[0]]
        others = [i for i in others if i not in {m.output[0] for m in chain}]
        if not chain or len(others) != 1:
            continue
        x, half = others[0], g.producer.get(others[0])
        if half is not None and half.op_type == "Mul" and len(g.variable_inputs(half)) == 1:
            x = g.variable_inputs(half)[0]  # 0.5 * x taken first
        region = g.between(x, chain[-1])
        if core.name in region:
            found |= region
    return found


def excluded_nodes(model: Any) -> dict[str, list[str]]:
    """Names of the nodes to keep in float, by kind: "layernorm", "gelu", "mask_add", "embedding_add",
    and "max_pooled" (``_common.max_pooled_matmuls``: the lightweight students' classifier input)."""
    g = _Graph(model)
    layernorm = {n.name for n in g.nodes if n.op_type in LAYERNORM_OPS} | _decomposed_layernorms(g)
    gelu = {n.name for n in g.nodes if n.op_type in GELU_OPS} | _decomposed_gelus(g)

    # the Add (or Where) that puts the mask's large negative bias on the attention scores: it reads
    # the mask by a path that goes through no MatMul or Softmax (later layers' scores do, via those)
    mask = [i.name for i in model.graph.input if i.name == "attention_mask"]
    masked = g.descendants(mask, stop=frozenset({"MatMul", "Gemm", "Softmax", *LAYERNORM_OPS}))
    mask_add = set()
    for softmax in (n for n in g.nodes if n.op_type == "Softmax"):
        node = g.producer.get(softmax.input[0])
        while node is not None and node.op_type in ("Cast", "Reshape"):
            node = g.producer.get(node.input[0])
        feeds = [g.producer[i].name for i in (node.input if node else []) if i in g.producer]
        if node is not None and node.op_type in ("Add", "Where") and masked.intersection(feeds):
            mask_add.add(node.name)

    # word + position + token-type lookups summed before the first LayerNorm
    lookups = [n.output[0] for n in g.nodes if n.op_type == "Gather" and n.input[0] in g.float_tables]
    before_norm = g.descendants(lookups, {"Add", "Cast"})
    embedding_add = {n.name for n in g.nodes if n.name in before_norm and n.op_type == "Add"}
    pooled = set(max_pooled_matmuls(model))
    found = {
        "layernorm": layernorm,
        "gelu": gelu,
        "mask_add": mask_add,
        "embedding_add": embedding_add,
        "max_pooled": pooled,
    }
    return {kind: sorted(names - {""}) for kind, names in found.items()}


class CalibrationReader:
    """Tokenized calibration batches, length-sorted so that padding (which still flows through every
    Linear layer) barely touches the activation ranges. Implements ORT's CalibrationDataReader."""

    def __init__(
        self, calibration: CalibrationData, tokenizer: Any, input_names: list[str], samples: int, batch_size: int
    ) -> None:
        texts, _ = calibration.sample(samples, "calibration")
        if not texts:
            raise ValueError("the calibration part of the train split is empty")
        max_length = calibration.max_length
        lengths = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        ordered = [texts[i] for i in sorted(range(len(texts)), key=lambda i: len(lengths[i]))]
        self.batches = []
        for start in range(0, len(ordered), batch_size):
            chunk = ordered[start : start + batch_size]
            encoded = tokenizer(chunk, padding="longest", truncation=True, max_length=max_length, return_tensors="np")
            self.batches.append({k: encoded[k].astype("int64") for k in input_names if k in encoded})
        self.set_range(0, len(self.batches))

    def get_next(self) -> dict[str, Any] | None:
        if self._position >= self._end:
            return None
        self._position += 1
        return self.batches[self._position - 1]

    def set_range(self, start_index: int, end_index: int) -> None:
        self._position, self._end = start_index, min(end_index, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


def keep_float_consumers(model: Any, quantized_ops: Iterable[str] = QUANTIZED_OPS) -> int:
    """Point every non-quantized consumer of a Q->DQ pair back at the float tensor; returns how many.

    ORT shares one QDQ pair among all consumers of a tensor, so a LayerNorm output feeding the Q/K/V
    MatMuls would also reach the residual Add (and so every later LayerNorm) through int8."""
    quantize = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    dequantized = {n.output[0]: quantize[n.input[0]] for n in model.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in quantize}  # fmt: skip
    kept = set(quantized_ops) | {"QuantizeLinear", "DequantizeLinear"}
    rewired = [
        (n, k) for n in model.graph.node if n.op_type not in kept for k, i in enumerate(n.input) if i in dequantized
    ]
    for node, index in rewired:
        node.input[index] = dequantized[node.input[index]]
    return len(rewired)


def unshare_initializers(model: Any, quantized_ops: Iterable[str] = QUANTIZED_OPS) -> int:
    """Give float consumers their own copy of an initializer that a quantized op also reads; returns
    how many. Exports dedupe equal tensors (a tiny model's zero biases are one tensor shared by every
    LayerNorm and Linear), and ORT would hand all of its readers the int8/int32-rounded copy."""
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node, name in ((n, i) for n in model.graph.node for i in n.input):
        consumers[name].append(node)
    copied = 0
    for tensor in list(model.graph.initializer):
        floats = [n for n in consumers[tensor.name] if n.op_type not in quantized_ops]
        if floats and len(floats) < len(consumers[tensor.name]):
            copy = model.graph.initializer.add()
            copy.CopyFrom(tensor)
            copy.name = f"{tensor.name}_float"
            for node in floats:
                node.input[:] = [copy.name if i == tensor.name else i for i in node.input]
            copied += 1
    return copied


def _pre_process(model_path: Path, out_path: Path) -> Path:
    """ORT's recommended pre-pass (ONNX shape inference, constant folding); best effort.

    Symbolic shape inference is skipped: it gives up on BERT exports, and when it gives up it writes
    ``sym_shape_infer_temp.onnx`` (and its weights) into the working directory, the user's folder.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(model_path), str(out_path), skip_symbolic_shape=True)
        return out_path
    except Exception as error:  # noqa: BLE001 - any failure just means "quantize the plain export"
        logging.getLogger(__name__).info("quant_pre_process failed: %s", error)
    return model_path


def _fused_with_types(model_path: Path, staging: Path) -> Path:
    """ORT's graph fusions, typed by ORT's symbolic shape inference (which knows their contrib ops):
    the calibrator observes only tensors of known type, so untyped it skips everything after the
    first fused op, and quantizing the pooler's bias then fails for want of its input's scale."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    fused = staging / "fused.onnx"
    fuse_transformer_graph(model_path, fused, staging / "config.json")
    onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(fused)), auto_merge=True), str(fused))
    return fused


class OrtStaticInt8(Exporter):
    name = "ort-static-int8"
    format = "onnx"
    precision = "int8"
    Options = OrtStaticInt8Options
    requires = ("optimum.exporters.onnx", "onnx", "onnxruntime")
    needs_calibration = True
    int8_attention = True  # every MatMul is quantized, the attention products included
    # fixed activation scales: unlike dynamic INT8 a sentence's logits cannot depend on its batch
    batch_invariant = True

    def format_for(self, options: Mapping[str, Any]) -> str:
        # the fused graph keeps com.microsoft ops (Attention, SkipLayerNormalization): ONNX Runtime only
        return ORT_ONLY_FORMAT if options.get("optimize") else self.format

    def export(self, source: Path, out_dir: Path, options: OrtStaticInt8Options, calibration: CalibrationData) -> None:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from transformers import AutoTokenizer

        if options.optimize:
            ort_model_type(source)  # an architecture ORT cannot fuse is n/a before any export work
        staging = out_dir / "fp32"
        model_path = export_onnx(source, staging)
        # One batch per collect: the histogram calibrators stack a collect's outputs into one array
        # (fails on batches of different lengths), and MinMax otherwise holds every batch's outputs
        # (its CalibMaxIntermediateOutputs drops data in ORT 1.31 rather than reducing it).
        extra: dict[str, Any] = {"OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS), "CalibStridedMinMax": 1}
        if options.method == "percentile":
            extra["CalibPercentile"] = options.percentile
        if options.optimize:
            model_path = _fused_with_types(model_path, staging)
            extra["DefaultTensorType"] = onnx.TensorProto.FLOAT  # fused contrib ops carry no type info
        model_path = _pre_process(model_path, staging / "prepared.onnx")
        model = onnx.load(str(model_path))
        if unshare_initializers(model):
            model_path = staging / "unshared.onnx"
            onnx.save(model, str(model_path))
        exclude = sorted({name for names in excluded_nodes(model).values() for name in names})
        inputs = [i.name for i in model.graph.input]
        tokenizer = AutoTokenizer.from_pretrained(source)
        reader = CalibrationReader(calibration, tokenizer, inputs, options.samples, options.batch_size)

        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the quantiser warns at WARNING about things handled here
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
                quantize_static(
                    str(model_path),
                    str(staging / "quantized.onnx"),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OPS),
                    per_channel=options.per_channel,
                    activation_type=QuantType.QUInt8,  # u8 x s8 is the fast VNNI/AVX path on x86
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude,
                    calibrate_method=CalibrationMethod[METHODS[options.method]],
                    extra_options=extra,
                )
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(staging / "quantized.onnx"))
        keep_float_consumers(quantized)
        onnx.save(quantized, str(out_dir / "model.onnx"))
        shutil.copy(staging / "config.json", out_dir / "config.json")
        shutil.rmtree(staging)
        copy_tokenizer(source, out_dir)


EXPORTER = OrtStaticInt8()
