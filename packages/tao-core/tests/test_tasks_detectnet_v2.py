"""tao_core.tasks.detectnet_v2: what an experiment spec says about scoring, and the image input."""

import numpy as np
import pytest
from google.protobuf import text_format

from tao_core.proto.detectnet_v2.experiment_pb2 import Experiment
from tao_core.tasks import detectnet_v2 as dn

SPEC = """
augmentation_config { preprocessing { output_image_width: 64 output_image_height: 32 output_image_channel: 3 } }
model_config { objective_set { bbox { scale: 30.0 offset: 0.25 } } }
cost_function_config { target_classes { name: "car" } target_classes { name: "person" } }
postprocessing_config { target_class_config { key: "car" value { clustering_config {
    coverage_threshold: 0.2 minimum_bounding_box_height: 4 clustering_algorithm: NMS } } } }
evaluation_config { average_precision_mode: SAMPLE
  minimum_detection_ground_truth_overlap { key: "car" value: 0.7 }
  evaluation_box_config { key: "person" value { minimum_height: 10 maximum_height: 0 minimum_width: 5 maximum_width: 80 } } }
"""


@pytest.fixture
def experiment():
    return text_format.Parse(SPEC, Experiment())


def test_spec_readers(experiment):
    assert dn.class_names(experiment) == ["car", "person"]
    assert dn.input_shape(experiment) == (3, 32, 64)
    assert dn.bbox_scale_offset(experiment) == (30.0, 0.25)
    params = dn.clustering_params(experiment)
    assert params["car"].algorithm == "nms" and params["car"].coverage_threshold == pytest.approx(0.2)
    assert params["person"] == dn.ClusteringParams()  # not configured: the documented defaults
    opts = dn.metric_options(experiment)
    assert opts["ap_mode"] == "sample" and opts["iou_thresholds"] == pytest.approx({"car": 0.7, "person": 0.5})
    f = opts["box_filters"]["person"]
    assert (f.min_height, f.max_height, f.min_width, f.max_width) == (10, np.inf, 5, 80) and "car" not in opts["box_filters"]


def test_report_and_kpi():
    result = {"mAP": 0.5, "per_class_ap": {"car": 0.75, "person": 0.25}}
    text = dn.report(result, validation_cost=0.123)
    assert text.splitlines()[:2] == ["Validation cost: 0.123000", "Mean average_precision (in %): 50.0000"]
    assert "car" in text and "75.0000" in text
    assert dn.kpi(result) == {"mean average precision": 50.0, "car": 75.0, "person": 25.0}


def test_preprocess_image():
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, 10:] = 255
    x = dn.preprocess_image(image, (4, 8))
    assert x.shape == (3, 4, 8) and x.dtype == np.float32
    assert x[:, :, 0].max() == 0.0 and x[:, :, -1].min() == 1.0  # left half black, right half white, in [0, 1]
    assert dn.preprocess_image(image, (4, 8), channels=1).shape == (1, 4, 8)
