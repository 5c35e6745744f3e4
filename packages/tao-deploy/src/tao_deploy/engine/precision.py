"""Precision as a pass over the ONNX graph (what TensorRT 11 requires, and TensorRT 10 accepts).

- FP16: an explicitly cast graph. Done with onnxruntime's float16 converter
  (`onnxruntime.transformers.float16`, shipped inside onnxruntime, so no extra dependency).
  Graph inputs and outputs stay float32 so callers always feed and receive float32; the ops in
  `FP16_KEEP_FP32_OPS` stay float32 because FP16 hurts them (see the list).
- INT8: QuantizeLinear / DequantizeLinear pairs, placed by `onnxruntime.quantization`
  (`quantize_static`, QDQ format) from ranges that this module computes with onnxruntime's
  calibrators or reads from a TensorRT calibration cache. Settings follow what TensorRT wants
  from explicit quantization: symmetric INT8 activations and weights (zero point 0), weights
  per output channel, biases left in float (TensorRT has no INT32 DequantizeLinear). For ONNX
  Runtime on CPU the graph takes another form (`cpu_int8_graph`): constants folded first (a
  frozen BatchNorm exported as Mul / Add goes into its Conv, as ONNX Runtime does for FP32), so
  the backbone runs as a chain of integer ops with one Q/DQ at each end.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from tao_core.errors import TaoUserError
from tao_deploy.engine.onnx_io import input_specs

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")

# Kept in float32 under FP16, and why:
FP16_KEEP_FP32_OPS = (
    "Softmax",  # exp of large logits overflows 65504; attention weights lose their small entries
    "Exp",  # overflows for inputs > ~11
    "Log",  # DETR's inverse_sigmoid: log(x / (1 - x)) near 0 and 1 is all rounding error in FP16
    "Sigmoid",  # saturates to exactly 1.0 above ~7 in FP16: box refs and scores feeding TopK tie
    "LayerNormalization",  # variance of activations
    "ReduceMean",  # a decomposed LayerNorm (ReduceMean - Sub - Pow - ReduceMean - Sqrt)
    "Pow",  # x**2 overflows for |x| > 256
    "Sqrt",
    "TopK",  # ordering of near-equal scores
)

# Nodes that get Q/DQ on their inputs by default: the compute-heavy ones TensorRT runs in INT8.
# Everything else (GridSample, Softmax, Resize, elementwise...) stays float: quantizing it
# buys little speed in TensorRT and costs accuracy (multi-scale deformable attention in particular).
INT8_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Ops an INT8 graph may also run in integer arithmetic where they sit between quantized Convs
# (a CNN backbone: residual Add, Relu, MaxPool), so no Q/DQ pair splits the chain; calibrated
# too, so one calibration serves every graph form.
INT8_CHAIN_OP_TYPES = ("Relu", "Add", "MaxPool")


def normalize_precision(precision: str) -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise TaoUserError(f"precision {precision!r} is not one of {[x.upper() for x in PRECISIONS]}")
    return p


# ---- FP16 ---------------------------------------------------------------------------------


def cast_to_fp16(model: onnx.ModelProto, keep_fp32_ops=FP16_KEEP_FP32_OPS, keep_fp32_nodes=()) -> onnx.ModelProto:
    """Mixed-precision FP16 copy of `model`: float32 I/O, `keep_fp32_ops` / `keep_fp32_nodes` in float32."""
    from onnxruntime.transformers import float16

    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    model16 = float16.convert_float_to_float16(
        _copy(model), keep_io_types=True, op_block_list=blocked, node_block_list=list(keep_fp32_nodes)
    )
    return _fold_cast_round_trips(model16)


def _fold_cast_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop float32 -> float16 -> float32 Cast pairs and restore topological order.

    The converter casts a kept-float32 op's output to float16 and, when that tensor is a graph
    output, back to float32: the round trip throws away the precision the op was kept for. It
    also appends the cast nodes at the end of the node list, which onnx's checker rejects.
    """
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    for node in graph.nodes:
        if node.op != "Cast" or node.attrs.get("to") != TensorProto.FLOAT:
            continue
        src = node.inputs[0]
        prev = src.inputs[0] if src.inputs else None
        if prev is None or prev.op != "Cast" or prev.attrs.get("to") != TensorProto.FLOAT16:
            continue
        original = prev.inputs[0]
        if original.dtype == np.float32:
            node.op, node.attrs, node.inputs = "Identity", {}, [original]
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    out.ir_version = model.ir_version  # graphsurgeon may write a newer IR than the runtime reads
    return out


# ---- INT8 ---------------------------------------------------------------------------------


def compute_amax(
    model: onnx.ModelProto, reader, method: str = "entropy", percentile: float = 99.999
) -> dict[str, float]:
    """Per-tensor absolute range (amax) of float tensors, observed over `reader`'s batches
    (see `compute_ranges`)."""
    return amax_of(compute_ranges(model, reader, method, percentile))


def amax_of(ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
    return {k: max(abs(lo), abs(hi)) for k, (lo, hi) in ranges.items()}


def compute_ranges(
    model: onnx.ModelProto, reader, method: str = "entropy", percentile: float = 99.999
) -> dict[str, tuple[float, float]]:
    """Per-tensor (lo, hi) range of float tensors, observed over `reader`'s batches.

    minmax observes every float tensor, so its calibration cache also serves TensorRT's
    implicit INT8 mode (DeepStream's int8-calib-file). The histogram methods (entropy,
    percentile) observe the tensors around the INT8_OP_TYPES and INT8_CHAIN_OP_TYPES nodes,
    the ones Q/DQ of either graph form needs: a
    histogram needs a finite range, and detection graphs hold tensors that are infinite on
    purpose (DETR's masked encoder proposals). Non-finite ranges are dropped in every mode.
    """
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    methods = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }
    # minmax keeps the observed (lo, hi) (an asymmetric uint8 graph uses both; amax is the same);
    # the histogram methods pick symmetric thresholds.
    extra = {"symmetric": method != "minmax"}
    if method == "percentile":
        extra["percentile"] = percentile
    if method == "entropy":
        extra.update(ENTROPY_HISTOGRAM)
    with tempfile.TemporaryDirectory(prefix="tao-calib-") as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save_model(_copy(model), src)
        calibrator = create_calibrator(
            src,
            [] if method == "minmax" else [*INT8_OP_TYPES, *INT8_CHAIN_OP_TYPES],  # [] = every float tensor
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=methods[method],
            extra_options=extra,
        )
        chunk = _Chunk(reader, CALIBRATION_CHUNK)
        with _quiet_onnxruntime():
            while not chunk.exhausted:
                chunk.taken = 0
                try:
                    calibrator.collect_data(chunk)
                except ValueError:  # onnxruntime's "No data is collected." for an empty chunk
                    if chunk.taken:
                        raise
                    if chunk.total == 0:
                        raise TaoUserError("calibration got no batches: the calibration data source is empty") from None
            ranges = calibrator.compute_data()
    out, dropped = {}, []
    for name, data in ranges.data.items():
        lo, hi = (float(np.min(v)) if i == 0 else float(np.max(v)) for i, v in enumerate(data.range_value))
        if np.isfinite(lo) and np.isfinite(hi):
            out[name] = (lo, hi)
        else:
            dropped.append(name)
    if dropped:
        log.info("calibration: %d tensors with non-finite values get no INT8 scale (they stay float): %s",
                 len(dropped), ", ".join(dropped[:8]))
    return out


# The entropy calibrator's histogram, pinned (onnxruntime 1.32's defaults) so that an onnxruntime
# upgrade cannot change every INT8 engine's ranges. With as many histogram bins as quantized bins,
# the KL-divergence search has a single candidate, the whole observed range: "entropy" keeps
# max |x|, as minmax does (tests/test_calibration.py pins it). That is deliberate: measured on the
# unpruned DetectNet_v2 demo model (resnet_10, 128x96), the full search (2048 bins, TensorRT's
# EntropyCalibration2 histogram) clips the Relu outputs to 20-40 % of their observed range and
# costs 13-16 AP points (mean IoU with the FP32 boxes 0.76) where the max range loses < 0.2; the
# DINO demo's INT8 bound was measured with these settings too.
ENTROPY_HISTOGRAM = {"num_bins": 128, "num_quantized_bins": 128}

# onnxruntime's calibrators keep every calibrated tensor of every batch they are given until
# collect_data returns, then fold them into ranges / histograms; feeding them a few batches per
# call bounds memory for large models and long calibration sets.
CALIBRATION_CHUNK = 8


class _Chunk:
    """A CalibrationDataReader view yielding at most `size` batches per collect_data call."""

    def __init__(self, reader, size: int):
        self.reader, self.size = reader, size
        self.taken = self.total = 0
        self.exhausted = False

    def get_next(self):
        if self.taken >= self.size:
            return None
        batch = self.reader.get_next()
        if batch is None:
            self.exhausted = True
            return None
        self.taken += 1
        self.total += 1
        return batch


@dataclass(frozen=True)
class Int8Graph:
    """The shape of an INT8 graph: what Q/DQ goes where, with which integer types.

    `tensorrt`: what TensorRT's explicit quantization wants (symmetric INT8 activations and
    weights, zero point 0, Q/DQ on the inputs of INT8_OP_TYPES only). `onnxruntime_cpu`: what
    ONNX Runtime's x86 kernels run fast (see `cpu_int8_graph`).
    """

    name: str
    quant_format: str = "QDQ"  # or "QOperator"
    activation_type: str = "int8"  # int8 | uint8
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: no int16 overflow in AVX2 u8 x s8 dot products
    inputs_only: bool = True  # Q/DQ on the inputs of quantized ops only (TensorRT), else also outputs
    op_types: tuple[str, ...] = INT8_OP_TYPES
    weights_only_matmul: bool = False  # quantize a MatMul only when its second input is a weight
    fold_constants: bool = False  # fold constant Mul / Add (BatchNorm) into Convs first (fold_constants)
    chain_ops: tuple[str, ...] = ()  # INT8_CHAIN_OP_TYPES quantized where they link quantized Convs
    activation_symmetric: bool = True  # False: Relu outputs get [0, amax] (zero point 0), Relu fused away
    quantize_bias: bool = False  # int32 biases: the bias add happens inside the integer Conv

    def to_json(self) -> dict:
        return asdict(self)


TENSORRT_INT8 = Int8Graph("tensorrt")


def cpu_has_vnni() -> bool:
    """True where the x86 CPU has AVX-512 VNNI / AVX-VNNI (u8 x s8 dot products without overflow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def cpu_int8_graph() -> Int8Graph:
    """The INT8 graph for ONNX Runtime on CPU (measured on the demo DINO; see the package README).

    Constants folded first, so each frozen BatchNorm (Mul / Add after a Conv) is inside its Conv
    and the backbone's Conv -> Add -> Relu -> MaxPool chain runs in uint8 from end to end
    (QLinearConv / QLinearAdd with int32 biases, Relu fused into the Conv by giving its input the
    Relu's [0, amax] range): unfolded, every Conv output went DQ -> Mul -> Add -> Relu -> Q in
    float, two roundings per Conv instead of one. uint8 activations x int8 per-channel weights
    (ORT's fast x86 path; u8 x u8 was slower); 7-bit weights (reduce_range) on CPUs without VNNI,
    whose AVX2 u8 x s8 instruction saturates at int16. Conv only among INT8_OP_TYPES: Conv is
    ~70% of a DETR's CPU time (the backbone), its MatMuls <5%, and quantizing them adds Q/DQ work
    and error for no measurable gain.
    """
    return Int8Graph("onnxruntime_cpu", quant_format="QDQ", activation_type="uint8", weight_type="int8",
                     per_channel=True, reduce_range=not cpu_has_vnni(), inputs_only=False,
                     op_types=("Conv",), weights_only_matmul=True, fold_constants=True,
                     chain_ops=INT8_CHAIN_OP_TYPES, activation_symmetric=False, quantize_bias=True)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` after ONNX Runtime's basic (hardware-independent, standard-ops-only) graph
    optimizations: constant folding, Conv + constant Mul / Add fusion (a frozen BatchNorm),
    redundant node removal. Float tensors keep their names (a fused Conv outputs what its last
    Add did), so calibration ranges of either graph apply to both. A graph ONNX Runtime cannot
    load (TensorRT plugins) is returned as it is."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="tao-fold-") as tmp:
        out = Path(tmp) / "folded.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(out)
        opts.log_severity_level = 3
        try:
            ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types; all mean "cannot run here"
            log.info("constants not folded: onnxruntime cannot load the graph (%s)", str(e).splitlines()[0][:160])
            return model
        folded = onnx.load_model(out)
    # ORT lists every domain it knows; keep the ones the graph uses (TensorRT's parser reads them)
    used = {n.domain for n in folded.graph.node} | {""}
    keep = [o for o in folded.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del folded.opset_import[:]
    folded.opset_import.extend(keep)
    return folded


def conv_chain(model: onnx.ModelProto, chain_ops=INT8_CHAIN_OP_TYPES, exclude_nodes=()) -> set[str]:
    """Names of the `chain_ops` nodes that link quantized Convs: every float input comes from a
    Conv (not excluded) or from another such node. In a detector that is the backbone's residual
    Adds, Relus and MaxPool; Adds of the transformer have other producers and stay float."""
    consts = _constants(model)
    excluded = set(exclude_nodes)
    inside: set[str] = set()  # tensors produced inside the chain
    names = set()
    for n in model.graph.node:  # nodes are in topological order
        if n.name in excluded:
            continue
        data = [i for i in n.input if i and i not in consts]
        if n.op_type == "Conv" and data:
            inside.update(n.output)
        elif n.op_type in chain_ops and data and all(i in inside for i in data):
            inside.update(n.output)
            names.add(n.name)
    return names


def keep_float_nodes(model: onnx.ModelProto, patterns) -> tuple[str, ...]:
    """Names of the nodes `patterns` keep in float: `op:<OpType>` entries match by op type, every
    other entry is a regular expression searched in node names (`sampling_offsets|attention_weights`)."""
    import re

    ops, regexes = set(), []
    for p in patterns or ():
        p = str(p).strip()
        if p.startswith("op:"):
            ops.add(p[3:])
            continue
        try:
            regexes.append(re.compile(p))
        except re.error as e:
            raise TaoUserError(f"int8 keep-float pattern {p!r} is not a valid regular expression: {e}") from None
    return tuple(n.name for n in model.graph.node
                 if n.op_type in ops or any(r.search(n.name) for r in regexes))


def insert_qdq(
    model: onnx.ModelProto,
    amax: dict[str, float],
    op_types=INT8_OP_TYPES,
    exclude_nodes=(),
    graph: Int8Graph = TENSORRT_INT8,
) -> onnx.ModelProto:
    """`model` with INT8 Q/DQ in the form `graph` on `op_types` nodes, using the given ranges.

    `amax` are symmetric ranges: what a TensorRT calibration cache holds, so an engine rebuilt
    from the cache is the engine calibrated from data, bit for bit (uint8 activations get zero
    point 128; with `graph.activation_symmetric` False, Relu outputs get [0, amax], zero point 0).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    if graph.fold_constants:
        model = fold_constants(model)
    exclude = list(exclude_nodes)
    if graph.weights_only_matmul:
        exclude += _activation_matmuls(model, exclude)
    chain = conv_chain(model, graph.chain_ops, exclude) if graph.chain_ops else set()
    if chain:  # a cache written for the TensorRT form alone may lack a chain tensor: that node stays float
        chain = {n for n in chain if _quantized_activations(model, (), (), {n}) <= set(amax)}
    only = None
    if chain:  # the chain ops are quantized there only
        only = sorted(chain | {n.name for n in model.graph.node if n.op_type in op_types and n.name not in exclude})
    needed = _quantized_activations(model, op_types, exclude, chain)
    missing = sorted(needed - set(amax))
    if missing:
        raise TaoUserError(
            f"the calibration ranges have no scale for tensor(s) {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}: the calibration cache was made for another model; "
            "delete it to recalibrate"
        )
    relu_out = {o for n in model.graph.node if n.op_type == "Relu" for o in n.output}
    lows = {k: (0.0 if not graph.activation_symmetric and k in relu_out else -a) for k, a in amax.items()}
    data = TensorsData(
        CalibrationMethod.MinMax,
        {k: TensorData(lowest=np.float32(lows[k]), highest=np.float32(a)) for k, a in amax.items()},
    )
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    extra = {"ActivationSymmetric": graph.activation_symmetric, "WeightSymmetric": True,
             "QuantizeBias": graph.quantize_bias}
    if graph.inputs_only:
        # Q/DQ on inputs only, as TensorRT's explicit quantization expects: a Q/DQ on a Conv
        # output would round what float consumers (GridSample, Softmax, graph outputs) read.
        extra["OpTypesToExcludeOutputQuantization"] = list(op_types)
    with tempfile.TemporaryDirectory(prefix="tao-qdq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        out = Path(tmp) / "int8.onnx"
        with _quiet_onnxruntime():
            quantize_static(
                _copy(model),
                out,
                calibration_data_reader=None,
                calibration_cache_path=cache,  # ranges given, no calibration run here
                calibrate_method=CalibrationMethod.MinMax,
                quant_format=QuantFormat.QDQ if graph.quant_format == "QDQ" else QuantFormat.QOperator,
                activation_type=qtype[graph.activation_type],
                weight_type=qtype[graph.weight_type],
                per_channel=graph.per_channel,
                reduce_range=graph.reduce_range,
                op_types_to_quantize=[*op_types, *(graph.chain_ops if chain else ())],
                nodes_to_quantize=only,
                nodes_to_exclude=exclude,
                extra_options=extra,
            )
        return onnx.load_model(out)


def _constants(model: onnx.ModelProto) -> set[str]:
    consts = {i.name for i in model.graph.initializer}
    return consts | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


def _activation_matmuls(model: onnx.ModelProto, exclude) -> list[str]:
    """MatMul nodes whose both inputs are activations (attention's Q K^T and A V)."""
    consts = _constants(model)
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and n.name not in exclude and not any(i in consts for i in n.input[:2])]


def _quantized_activations(model: onnx.ModelProto, op_types, exclude_nodes, chain=frozenset()) -> set[str]:
    """Non-constant inputs of the nodes that will be quantized: the ranges insert_qdq needs."""
    consts = _constants(model)
    excluded = set(exclude_nodes)
    needed = set()
    for n in model.graph.node:
        if (n.op_type in op_types and n.name not in excluded) or n.name in chain:
            needed |= {i for i in n.input[:2] if i and i not in consts}
            if n.name in chain:
                needed |= {o for o in n.output}
    return needed


class _DropQuantAdvice(logging.Filter):
    # quantize_static warns on the root logger that the model was not run through its own
    # pre-processing; our graphs are exported models used as they are, so the advice is noise.
    # Its notes on biases that are not initializers (DETR's projections with computed biases) are
    # about quantizing the bias, which stays float here anyway.
    NOISE = ("pre-processing", "pre_process", "to be an initializer", "is not constant")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.NOISE)


@contextlib.contextmanager
def _quiet_onnxruntime():
    """onnxruntime's calibrators print progress to stdout: route it to the debug log instead."""
    root, flt, buf = logging.getLogger(), _DropQuantAdvice(), io.StringIO()
    root.addFilter(flt)
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        root.removeFilter(flt)
        if buf.getvalue().strip():
            log.debug("onnxruntime: %s", buf.getvalue().strip())


def model_input_dtypes(model: onnx.ModelProto) -> dict[str, str]:
    return {s.name: s.dtype for s in input_specs(model)}


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m
