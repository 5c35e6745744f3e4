"""BatchNormalization statistics of a short training: the momentum warm-up, the re-estimation before
saves, and a tiny overfit that evaluated AP 0 before (benchmarks/detectnet_v2_overfit.py --bn keras)."""

import json

import numpy as np
import tensorflow as tf
import tf_keras as keras
from conftest import experiment_spec, export_spec, make_kitti

from tao_core.proto.detectnet_v2.model_pb2 import ModelConfig
from tao_tf.detectnet_v2.cli import CLI
from tao_tf.detectnet_v2.model.batchnorm import MomentumWarmup
from tao_tf.detectnet_v2.model.build import build_model


def _batch_stats(model, layer_name, x):
    features = keras.Model(model.input, model.get_layer(layer_name).input)(x).numpy()
    flat = features.reshape(-1, features.shape[-1])
    return flat.mean(axis=0), flat.var(axis=0)


def test_first_updates_average_the_batches_and_saving_sees_plain_layers(tmp_path):
    model = build_model(ModelConfig(arch="resnet", num_layers=10, use_batch_norm=True), 1, (3, 32, 32))
    n_weights = len(model.weights)
    bn = MomentumWarmup(model)
    assert len(model.weights) == n_weights  # the momentum variable is not a layer weight
    rng = np.random.default_rng(0)
    a, b = (tf.constant(rng.random((4, 3, 32, 32), dtype=np.float32)) for _ in range(2))
    step = tf.function(lambda x: model(x, training=True))
    bn.set_step(0)
    step(a)
    layer = model.get_layer("bn_conv1")
    mean_a, var_a = _batch_stats(model, "bn_conv1", a)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean_a, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var_a, rtol=2e-2)  # fused BN: Bessel-corrected
    assert var_a.mean() < 0.1  # inputs in [0, 1]: Keras's start value 1.0 would dominate for hundreds of steps
    bn.set_step(1)  # the second update weighs both batches equally
    step(b)
    mean_b, _ = _batch_stats(model, "bn_conv1", b)
    np.testing.assert_allclose(layer.moving_mean.numpy(), (mean_a + mean_b) / 2, rtol=1e-3, atol=1e-6)
    bn.set_step(10_000)
    assert abs(float(layer.momentum) - 0.99) < 1e-6  # then Keras's (and TAO's) own momentum
    # re-estimation: the plain average over the given batches, whatever came before
    batches = iter([a, b])
    bn.recalibrate(lambda: step(next(batches)), 2)
    np.testing.assert_allclose(layer.moving_mean.numpy(), (mean_a + mean_b) / 2, rtol=1e-3, atol=1e-6)
    with bn.plain():
        assert layer.momentum == 0.99
        model.save(str(tmp_path / "m.h5"), save_format="h5")
    assert isinstance(layer.momentum, tf.Variable)


def test_tiny_overfit_evaluates_high_ap(tmp_path):
    """4 images, 64x64, 60 steps: the train-set AP was 0.0 with Keras's BN statistics, 1.0 now."""
    root = make_kitti(tmp_path / "data", 4)
    (tmp_path / "convert.txt").write_text(export_spec(root, shards=1, val_split=0.0001))
    CLI.run("dataset_convert", ["-d", str(tmp_path / "convert.txt"), "-o", str(tmp_path / "tfr" / "rac")])
    text = experiment_spec(f"{tmp_path}/tfr/rac*", root, width=64, height=64, epochs=60, batch=4, first_validation=60,
                           checkpoint_interval=60)  # fmt: skip
    for old, new in {"hflip_probability: 0.5 zoom_min: 0.9 zoom_max: 1.1 translate_max_x: 4.0":
                     "hflip_probability: 0.0 zoom_min: 1.0 zoom_max: 1.0 translate_max_x: 0.0",
                     "translate_max_y: 4.0": "translate_max_y: 0.0",
                     "hue_rotation_max: 25.0 saturation_shift_max: 0.2 contrast_scale_max: 0.1":
                     "hue_rotation_max: 0.0 saturation_shift_max: 0.0 contrast_scale_max: 0.0",
                     "max_learning_rate: 5e-4": "max_learning_rate: 2e-3", "annealing: 0.7": "annealing: 0.3"}.items():
        assert old in text
        text = text.replace(old, new)  # fmt: skip
    spec, results = tmp_path / "spec.txt", tmp_path / "results"
    spec.write_text(text)
    assert CLI.run("train", ["-e", str(spec), "-r", str(results), "-k", "k"]) == 0
    model = str(results / "weights" / "model.tlt")
    assert CLI.run("evaluate", ["-e", str(spec), "-m", model, "-k", "k", "--use_training_set", "-r", str(results)]) == 0
    result = json.loads((results / "evaluate" / "results.json").read_text())
    assert result["num_ground_truth"] == {"raccoon": 4}
    assert result["mAP"] >= 0.75, result
