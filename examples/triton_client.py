"""Complete one bundled KITTI frame through a running `jarrn serve` (tritonclient over HTTP, 127.0.0.1:8000)."""
import numpy as np
import tritonclient.http as triton
from jarrn_deploy.export.triton_config import MODEL_NAME                       # "jarrn": the served model's name
from jarrn_deploy.model.real_frames import load_real_frames

frame = load_real_frames()[0]                                                   # kitti_02: uint8 HxWx3 + LiDAR metres
rgb = (frame.rgb.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)          # [1,3,H,W] in 0..1
sparse = frame.sparse[None, None].astype(np.float32)                           # [1,1,H,W] metres, 0 = missing
inputs = [triton.InferInput("rgb", rgb.shape, "FP32"), triton.InferInput("sparse_depth", sparse.shape, "FP32")]
inputs[0].set_data_from_numpy(rgb), inputs[1].set_data_from_numpy(sparse)
depth = triton.InferenceServerClient("127.0.0.1:8000").infer(MODEL_NAME, inputs).as_numpy("depth")[0, 0]
print(f"{frame.name}: depth {depth.shape[1]}x{depth.shape[0]}, {depth.min():.2f}..{depth.max():.2f} m")
