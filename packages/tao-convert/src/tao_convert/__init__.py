"""tao-converter: build an engine from an .onnx or encrypted .etlt (see tao_convert.cli)."""

__version__ = "0.1.0"
