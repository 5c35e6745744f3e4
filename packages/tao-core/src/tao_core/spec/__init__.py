"""The spec engine: schema fields, YAML loading, validation, template and JSON Schema."""

from tao_core.spec.fields import spec_field
from tao_core.spec.yaml_spec import YamlSpec, save_experiment

__all__ = ["YamlSpec", "save_experiment", "spec_field"]
