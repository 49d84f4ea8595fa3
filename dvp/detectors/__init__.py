"""Face detection backends: each finds face boxes in a whole frame (RGB) and
returns them as `dvp.faces.Face`s in the frame's pixels. `dvp.faces.FaceDetector`
picks one by name and adds landmarks where a filter needs them."""
