"""Does this machine's ONNX Runtime compute uint8 x int8 GEMMs exactly? (measured, not looked up)

deploytool's int8 files (and ORT's ``quantize_dynamic`` with its default ``QInt8`` weights, and optimum's
``ORTQuantizer``) multiply uint8 activations by int8 weights. On x86 without VNNI (AVX2 only: Intel
Haswell to Skylake client, AMD Zen 1-3), MLAS's U8S8 kernel uses ``vpmaddubsw``, which adds two u8 x s8
products into a *saturating* int16: a pair over 32767 is clipped, and the model's outputs move. With
AVX-512 VNNI / AVX-VNNI (``vpdpbusd``, int32 accumulation) and on ARM64 (``sdot``/``udot``) the product is
exact. ONNX Runtime's documentation recommends ``reduce_range`` (7-bit weights) or U8U8 on such CPUs.

:func:`u8s8_exact` runs one ``MatMulInteger`` whose exact result is known (activations 255, weights 127:
every pair is 64,770, twice the int16 limit) on this machine's ONNX Runtime CPU provider and compares. The
answer is cached per process; ``None`` means ONNX Runtime is not installed.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["GEMM_WEIGHT_SLOTS", "exact_twin", "gemm_weight_codes", "saturation_note", "u8s8_exact"]

_K, _N = 64, 16


def _probe_model(weight_dtype) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((_K, _N), 127, dtype=np.int8)
    zp = np.array(0, np.int8)
    if weight_dtype == np.uint8:  # the same integers as U8U8: 255 stored with zero point 128
        w, zp = np.full((_K, _N), 255, dtype=np.uint8), np.array(128, np.uint8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["y"])], "u8s8_probe",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, _K])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, _N])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(0, np.uint8), "az"),
         numpy_helper.from_array(zp, "wz")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             ir_version=min(onnx.IR_VERSION, 8)).SerializeToString()


def _run(weight_dtype) -> bool:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(_probe_model(weight_dtype), opts, providers=["CPUExecutionProvider"])
    a = np.full((4, _K), 255, dtype=np.uint8)
    y = sess.run(None, {"a": a})[0]
    return bool(np.array_equal(y, np.full((4, _N), 255 * 127 * _K, dtype=np.int64)))


@functools.lru_cache(maxsize=None)
def u8s8_exact() -> bool | None:
    """True when ONNX Runtime's CPU provider here multiplies uint8 x int8 exactly (VNNI x86, ARM64),
    False when it saturates (x86 without VNNI), None without onnxruntime."""
    try:
        return _run(np.int8)
    except ImportError:
        return None


def saturation_note(what: str = "int8 weights") -> str | None:
    """One sentence for a user whose numbers come from a saturating host, else None."""
    if u8s8_exact() is not False:
        return None
    from deploytool.runtime.host import detect_host

    h = detect_host()
    cpu = f"{h.model_name} ({h.microarchitecture}, {', '.join(h.features) or 'no SIMD features named'})"
    return (f"this CPU, {cpu}, has no VNNI: ONNX Runtime adds u8 x s8 products in pairs in a saturating int16 "
            f"(measured by a probe GEMM), so {what} compute less exactly here than on a VNNI x86 or ARM64 "
            "device; for x86 targets without VNNI quantize with --weights pairsafe (int8's speed) or uint8")


# the integer GEMM ops (and the DequantizeLinear of a weight, static int8's QDQ form) by input index:
# (weight, weight scale or None, weight zero point)
GEMM_WEIGHT_SLOTS = {"QAttention": (1, 4, 7), "DynamicQuantizeMatMul": (1, 2, 3), "MatMulIntegerToFloat": (1, 3, 5),
                     "MatMulInteger": (1, None, 3), "QLinearMatMul": (3, 4, 5), "DequantizeLinear": (0, 1, 2)}


def gemm_weight_codes(path) -> set[str]:
    """The element types (``int8`` / ``uint8``) of the constant weights of a model's integer GEMMs, read from
    the graph only (external data is not loaded); empty for a model without integer GEMMs."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    types = {t.name: t.data_type for t in m.graph.initializer}
    names = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    out = set()
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" or n.op_type not in GEMM_WEIGHT_SLOTS:
            continue
        i = GEMM_WEIGHT_SLOTS[n.op_type][0]
        if len(n.input) > i and types.get(n.input[i]) in names:
            out.add(names[types[n.input[i]]])
    return out


def exact_twin(path):
    """The model at ``path`` with every constant int8 integer-GEMM weight stored as uint8 (``q + 128``, its
    zero point ``+ 128``), as an ``onnx.ModelProto``: the same integers, which ONNX Runtime multiplies with
    its exact U8U8 kernel on every CPU. None when the model has no such weight. (A ``DequantizeLinear`` of a
    constant int8 weight, static int8's QDQ form, is rewritten the same way: ORT fuses it into an integer
    GEMM of the stored type.) A node whose zero point is not a constant int8 tensor is left as it is. The file
    is not modified."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name: t for t in g.initializer}

    def add(name: str, array: np.ndarray) -> None:
        if name not in inits:
            inits[name] = numpy_helper.from_array(array, name)
            g.initializer.append(inits[name])

    rewritten: set[str] = set()  # weights already stored as uint8 (a weight several nodes read)
    changed = 0
    for node in g.node:
        slots = GEMM_WEIGHT_SLOTS.get(node.op_type)
        if slots is None or len(node.input) <= slots[0] or node.input[slots[0]] not in inits:
            continue
        wi, si, zi = slots
        t = inits[node.input[wi]]
        if t.data_type != onnx.TensorProto.INT8 and t.name not in rewritten:
            continue
        zname = node.input[zi] if len(node.input) > zi else ""
        if zname:
            z = inits.get(zname)
            if z is None or z.data_type != onnx.TensorProto.INT8:
                continue  # checked before anything of this node changes
            new_z = f"{zname}_u8_twin"
            add(new_z, (numpy_helper.to_array(z).astype(np.int16) + 128).astype(np.uint8))
        else:
            scale = inits.get(node.input[si]) if si is not None and len(node.input) > si else None
            new_z = f"{t.name}_u8_twin_zero_point"
            add(new_z, np.full(tuple(scale.dims) if scale is not None else (), 128, np.uint8))
        if t.name not in rewritten:
            q = numpy_helper.to_array(t).astype(np.int16) + 128
            t.CopyFrom(numpy_helper.from_array(q.astype(np.uint8), t.name))
            rewritten.add(t.name)
        ins = list(node.input) + [""] * (zi + 1 - len(node.input))
        ins[zi] = new_z
        del node.input[:]
        node.input.extend(ins)
        changed += 1
    return m if changed else None
