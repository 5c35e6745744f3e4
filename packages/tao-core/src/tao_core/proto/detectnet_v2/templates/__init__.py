"""Default DetectNet_v2 specs (package data, read by SPEC.template)."""
