"""FP16 mixed precision and INT8 explicit quantization of the exported graph, for TensorRT's strongly typed builds.

TensorRT 11 (and TRT 10 with ``STRONGLY_TYPED``) takes precision from the ONNX itself: FP16 tensors and Casts, INT8
``QuantizeLinear``/``DequantizeLinear`` pairs. Both conversions touch only the two U-Nets (node names starting with
:data:`jarrn_deploy.export.precision.graph.UNET_NODE_PREFIXES`); the contract part (validity mask, normalisation with its ReduceMax /
ReduceMin, padding, input concatenations, the rectification with its Sigmoid / Softmax, cropping, de-normalisation)
stays FP32, and the graph inputs and outputs stay float32.

Libraries, in order of preference (see export/README.md for why):

* FP16: NVIDIA Model Optimizer AutoCast (``modelopt.onnx.autocast``, the ``quant`` extra), else onnxconverter-common's
  ``float16.convert_float_to_float16``.
* INT8: Model Optimizer's ONNX PTQ (``modelopt.onnx.quantization.quantize``), else ONNX Runtime's ``quantize_static``
  in QDQ format with symmetric INT8 activations and symmetric per-channel INT8 weights (what TensorRT expects).

``JARRN_PRECISION_BACKEND=fallback`` forces the second choice (for comparisons and tests).

Modules: :mod:`.libraries` (which library, install hint, quiet/fast context managers), :mod:`.graph` (U-Net vs
contract nodes, shared graph helpers), :mod:`.fp16`, :mod:`.int8`.
"""

from jarrn_deploy.export.precision.fp16 import remove_cast_round_trips, to_fp16
from jarrn_deploy.export.precision.graph import FP32_OP_TYPES, contract_nodes, is_unet_node, nodes_matching
from jarrn_deploy.export.precision.int8 import INT8_EXCLUDE, quantized_convs, to_int8
from jarrn_deploy.export.precision.libraries import INSTALL_HINT, fp16_backend, int8_backend, require_backend, warnings_silenced

__all__ = [
    "FP32_OP_TYPES",
    "INSTALL_HINT",
    "INT8_EXCLUDE",
    "contract_nodes",
    "fp16_backend",
    "int8_backend",
    "is_unet_node",
    "nodes_matching",
    "quantized_convs",
    "remove_cast_round_trips",
    "require_backend",
    "to_fp16",
    "to_int8",
    "warnings_silenced",
]
