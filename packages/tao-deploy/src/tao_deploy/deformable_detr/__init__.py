"""Deformable DETR on TensorRT / ONNX Runtime engines: `tao deploy deformable_detr <task>` (see tao_deploy.detr)."""
