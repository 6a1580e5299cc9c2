"""TensorRT and TensorRT-RTX engines from an exported ONNX graph: what the build reads from the graph (``graph``), its
optimization profiles and options (``profile``), the two TensorRT flavours (``flavours``), the manifest beside every
engine (``manifest``), zstd-compressed engine files (``compression``), the equivalent ``trtexec`` command lines
(``recipes``) and the kernel sources a TensorRT-RTX engine stores (``sources``)."""
