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

__all__ = ["saturation_note", "u8s8_exact"]

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


# integer GEMM ops and the input index of their weight
_GEMM_WEIGHT = {"QAttention": 1, "DynamicQuantizeMatMul": 1, "MatMulInteger": 1, "MatMulIntegerToFloat": 1,
                "QLinearMatMul": 3}


def gemm_weight_codes(path) -> set[str]:
    """The element types (``int8`` / ``uint8``) of the constant weights of a model's integer GEMMs, read from
    the graph only (external data is not loaded); empty for a model without integer GEMMs."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    types = {t.name: t.data_type for t in m.graph.initializer}
    names = {onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "uint8"}
    out = set()
    for n in m.graph.node:
        i = _GEMM_WEIGHT.get(n.op_type)
        if i is not None and len(n.input) > i and types.get(n.input[i]) in names:
            out.add(names[types[n.input[i]]])
    return out


# ops whose constant int8 weight can be stored as uint8 + 128 with its zero point + 128: (weight, zero point) indices
_TWIN_SLOTS = {"QAttention": (1, 7, 4), "DynamicQuantizeMatMul": (1, 3, 2), "MatMulInteger": (1, 3, None),
               "MatMulIntegerToFloat": (1, 5, 3), "QLinearMatMul": (3, 5, 4), "DequantizeLinear": (0, 2, 1)}


def exact_twin(path):
    """The model at ``path`` with every constant int8 integer-GEMM weight stored as uint8 (``q + 128``, its
    zero point ``+ 128``), as an ``onnx.ModelProto``: the same integers, which ONNX Runtime multiplies with
    its exact U8U8 kernel on every CPU. None when the model has no such weight. (A ``DequantizeLinear`` of a
    constant int8 weight, static int8's QDQ form, is rewritten the same way: ORT fuses it into an integer
    GEMM of the stored type.) The file is not modified."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    done: dict[str, str] = {}
    changed = 0
    for node in g.node:
        slots = _TWIN_SLOTS.get(node.op_type)
        if slots is None:
            continue
        wi, zi, si = slots
        if len(node.input) <= wi or inits.get(node.input[wi]) is None:
            continue
        t = inits[node.input[wi]]
        if t.data_type == onnx.TensorProto.UINT8 and t.name in done.values():
            pass  # shared weight rewritten already for another reader
        elif t.data_type != onnx.TensorProto.INT8:
            continue
        zname = node.input[zi] if len(node.input) > zi and node.input[zi] else ""
        if t.name not in done.values():
            q = numpy_helper.to_array(t).astype(np.int16) + 128
            t.CopyFrom(numpy_helper.from_array(q.astype(np.uint8), t.name))
            done[t.name + "#w"] = t.name
        if zname and zname in inits and inits[zname].data_type == onnx.TensorProto.INT8:
            z = numpy_helper.to_array(inits[zname]).astype(np.int16) + 128
            new_z = f"{zname}_u8_twin"
            if new_z not in inits:
                zt = numpy_helper.from_array(z.astype(np.uint8), new_z)
                g.initializer.append(zt)
                inits[new_z] = zt
        elif zname:
            continue  # a zero point that is not a constant int8 tensor: leave the node alone
        else:
            shape = () if si is None or len(node.input) <= si or node.input[si] not in inits else \
                tuple(inits[node.input[si]].dims)
            new_z = f"{t.name}_u8_twin_zero_point"
            if new_z not in inits:
                zt = numpy_helper.from_array(np.full(shape, 128, np.uint8), new_z)
                g.initializer.append(zt)
                inits[new_z] = zt
        ins = list(node.input) + [""] * (zi + 1 - len(node.input))
        ins[zi] = new_z
        del node.input[:]
        node.input.extend(ins)
        changed += 1
    return m if changed else None
