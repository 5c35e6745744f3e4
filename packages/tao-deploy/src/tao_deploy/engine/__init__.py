"""Engine building: ONNX loading, profiles, precision passes, calibration, engine file."""
