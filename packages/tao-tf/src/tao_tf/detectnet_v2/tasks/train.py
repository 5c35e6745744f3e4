"""`detectnet_v2 train -e SPEC -r DIR -k KEY [-n NAME] [--gpus N] [--gpu_index I ...] [--use_amp]`.

Devices and precision: tao_tf.detectnet_v2.distribution (tf.distribute strategies, mixed
precision). BatchNormalization statistics are kept consistent with the weights at every save
and validation by tao_tf.detectnet_v2.model.batchnorm.

Outputs under DIR: `weights/model_epoch_XXX.tlt` every checkpoint_interval epochs (model,
optimizer state, epoch and autoweighting state in one atomically written, encrypted file),
`weights/<NAME>.tlt` at the end, `train/status.json` (STARTED, one RUNNING line per epoch with
epoch / max_epoch / eta / kpi, validation AP lines, SUCCESS), `train/train.log` and TensorBoard
events in `events/`. Re-running the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tao_core.cli.detectnet_v2_args import parse_args
from tao_core.errors import TaoUserError
from tao_core.results import Status, setup_task_logging, task_run
from tao_core.specs.detectnet_v2 import SPEC
from tao_tf.detectnet_v2 import evaluation
from tao_tf.detectnet_v2.data.pipeline import (
    class_names,
    count_frames,
    input_shape,
    split_files,
    steps_per_epoch,
    training_dataset,
)
from tao_tf.detectnet_v2.distribution import amp_policy, is_chief, training_strategy, with_policy
from tao_tf.detectnet_v2.model.batchnorm import MomentumWarmup
from tao_tf.detectnet_v2.model.build import HEAD_LAYERS, build_model, check_qat
from tao_tf.detectnet_v2.model.cost import CostWeights, class_costs, total_cost
from tao_tf.detectnet_v2.model.io import load_model, save_model
from tao_tf.detectnet_v2.model.schedule import lr_from_config

log = logging.getLogger("tao_tf.detectnet_v2.train")
_CHECKPOINT = re.compile(r"model_epoch_(\d+)\.tlt$")
RECALIBRATION_BATCHES = 32  # at most this many training batches re-estimate BN statistics before a save / validation


def main(argv: list[str]) -> int:
    args = parse_args("train", argv)
    setup_task_logging(args.results_dir, "train")
    if args.log_file:  # TAO's --log_file: a copy of the log wherever the user asks
        handler = logging.FileHandler(args.log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    if args.enable_determinism:
        tf.config.experimental.enable_op_determinism()
    with task_run(args.results_dir, "train", network="detectnet_v2") as status:
        experiment = SPEC.load("train", args.experiment_spec_file)
        strategy = training_strategy(args.gpus, args.gpu_index)
        train(experiment, args.results_dir, args.key, args.model_name, status, strategy=strategy,
              use_amp=args.use_amp)  # fmt: skip
    return 0


def latest_checkpoint(weights_dir: str) -> str | None:
    found = [(int(m.group(1)), p) for p in glob.glob(os.path.join(weights_dir, "model_epoch_*.tlt"))
             if (m := _CHECKPOINT.search(p))]  # fmt: skip
    return max(found)[1] if found else None


def initial_model(experiment, key: str | None = None):
    """A fresh model, weights copied by layer name from pretrained_model_file, or (load_graph) that model itself.

    A pretrained model is opened with the run's key, as TAO does (one -k for every model file).
    """
    mc = experiment.model_config
    names = class_names(experiment)
    shape = input_shape(experiment)
    if mc.pretrained_model_file and mc.load_graph:
        model, meta, _ = load_model(mc.pretrained_model_file, key)
        if model.get_layer("output_cov").output_shape[1] != len(names):
            raise TaoUserError(f"model_config.pretrained_model_file: {mc.pretrained_model_file} has "
                               f"{model.get_layer('output_cov').output_shape[1]} classes, the spec {len(names)}")
        log.info("Loaded the graph and weights of %s (load_graph)", mc.pretrained_model_file)
        return model
    model = build_model(mc, len(names), shape, experiment.training_config)
    if mc.pretrained_model_file:
        source, _, _ = load_model(mc.pretrained_model_file, key)
        copied = 0
        for layer in model.layers:
            try:
                other = source.get_layer(layer.name)
            except ValueError:
                continue
            values = other.get_weights()
            if values and [v.shape for v in values] == [w.shape for w in layer.get_weights()]:
                layer.set_weights(values)
                copied += 1
        log.info("Copied the weights of %d layers from %s", copied, mc.pretrained_model_file)
    return model


def _config_numbers(tc, ev):
    epochs = tc.num_epochs or 120
    interval = max(1, int(round(tc.checkpoint_interval or 10)))
    first = ev.first_validation_epoch or 30
    period = ev.validation_period_during_training or 10
    return epochs, interval, first, period


def train(experiment, results_dir: str, key: str | None, model_name: str = "model", status=None, strategy=None,
          use_amp: bool = False) -> str:  # fmt: skip
    """Train (or resume) and return the path of the final model.

    `strategy`: a tf.distribute strategy (distribution.training_strategy; None = one device). Each
    replica takes batch_size_per_gpu frames per step. `use_amp`: mixed precision (distribution.amp_policy).
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    chief = is_chief(strategy)
    tc = experiment.training_config
    epochs, interval, first_val, period = _config_numbers(tc, experiment.evaluation_config)
    batch = tc.batch_size_per_gpu or 32
    global_batch = batch * replicas
    if tc.enable_qat:
        check_qat(experiment.model_config)
        if use_amp:
            raise TaoUserError("--use_amp: mixed precision cannot be combined with training_config.enable_qat")
    lr_fn = lr_from_config(tc)
    weights = CostWeights(experiment.cost_function_config)
    names = class_names(experiment)
    if weights.names != names:
        raise TaoUserError(f"cost_function_config.target_classes {weights.names} must match the model classes")
    num_frames = count_frames(split_files(experiment, "train"))
    if num_frames < global_batch:
        raise TaoUserError(f"dataset_config: {num_frames} training frames, fewer than one step of {batch} frames x "
                           f"{replicas} replicas (training_config.batch_size_per_gpu)")  # fmt: skip
    steps = steps_per_epoch(num_frames, global_batch)
    weights_dir = os.path.join(results_dir, "weights")
    os.makedirs(weights_dir, exist_ok=True)
    tf.random.set_seed(experiment.random_seed)  # seeded always, so --enable_determinism can hold
    np.random.seed(experiment.random_seed)
    policy = amp_policy() if use_amp else None

    resume = latest_checkpoint(weights_dir)
    start_epoch, opt_values = 0, []
    with strategy.scope():
        if resume:
            model, meta, opt_values = load_model(resume, key)
            start_epoch = int(meta["epoch"])
            weights.objective_weights = np.asarray(meta["objective_weights"], np.float64)
            log.info("Resuming training from %s (epoch %d)", resume, start_epoch)
        else:
            model = initial_model(experiment, key)
            if tc.enable_qat:
                from tao_tf.detectnet_v2.model.qat import is_quantized, quantize_model

                if not is_quantized(model):
                    model = quantize_model(model)
                    log.info("Quantization-aware training: fake-quantized convolutions, ReLUs and Adds (tfmot)")
        if policy:  # models are stored float32; the training copy computes in half precision
            model = with_policy(model, policy, keep_float32=HEAD_LAYERS)
            log.info("Automatic mixed precision: %s (heads, loss and variables float32)", policy)
        adam = tc.optimizer.adam
        optimizer = keras.optimizers.Adam(learning_rate=tf.Variable(lr_fn(0.0), dtype=tf.float32, trainable=False),
                                          beta_1=adam.beta1 or 0.9, beta_2=adam.beta2 or 0.999,
                                          epsilon=adam.epsilon or 1e-8)  # fmt: skip
        optimizer.build(model.trainable_variables)
        # float16 needs dynamic loss scaling (bfloat16 has float32's range); its state is not checkpointed
        scaler = keras.mixed_precision.LossScaleOptimizer(optimizer) if policy == "mixed_float16" else None
        bn_warmup = MomentumWarmup(model)
    if opt_values:
        if len(opt_values) != len(optimizer.variables):
            raise TaoUserError(f"{resume}: optimizer state does not match the model; remove the checkpoint to restart")
        for var, value in zip(optimizer.variables, opt_values, strict=True):
            var.assign(value)
    class_w = tf.constant(weights.class_weights, tf.float32)
    foreground = tf.constant(weights.foreground, tf.float32)

    def replica_step(images, targets, objective_w):
        with tf.GradientTape() as tape:
            cov, bbox = model(images, training=True)
            costs = class_costs(targets["cov"], cov, targets["bbox"], bbox, targets["cov_norm"], foreground)
            loss = total_cost(costs, class_w, objective_w)
            if model.losses:
                loss += tf.add_n(model.losses)
            # gradients are summed over the replicas: each contributes its share of the mean
            scaled = loss / replicas
            if scaler is not None:
                scaled = scaler.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, model.trainable_variables)
        if scaler is not None:
            grads = scaler.get_unscaled_gradients(grads)
        (scaler or optimizer).apply_gradients(zip(grads, model.trainable_variables))
        return loss, costs

    @tf.function
    def forward_step(images):
        strategy.run(lambda x: model(x, training=True), args=(images,))  # BN statistics only

    @tf.function
    def train_step(images, targets, objective_w):
        loss, costs = strategy.run(replica_step, args=(images, targets, objective_w))
        mean = tf.distribute.ReduceOp.MEAN
        return strategy.reduce(mean, loss, axis=None), strategy.reduce(mean, costs, axis=None)

    dataset = training_dataset(experiment, global_batch, augment=True, seed=experiment.random_seed)
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    writer = tf.summary.create_file_writer(os.path.join(results_dir, "events")) if chief else None
    log.info("Training %s on %d frames: %d epochs of %d steps, batch %d%s", model.name, num_frames, epochs, steps,
             batch, f" x {replicas} replicas" if replicas > 1 else "")  # fmt: skip
    started = time.monotonic()
    for epoch in range(start_epoch, epochs):
        print(f"Epoch {epoch + 1}/{epochs}")
        bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "lr"])
        sums, losses = np.zeros((len(names), 2)), []
        for s in range(steps):
            lr = lr_fn((epoch * steps + s) / (epochs * steps))
            optimizer.learning_rate.assign(lr)
            bn_warmup.set_step(epoch * steps + s)
            images, targets = next(batches)
            loss, costs = train_step(images, targets, tf.constant(weights.objective_weights, tf.float32))
            loss = float(loss)
            if not np.isfinite(loss):
                raise TaoUserError(f"training diverged at epoch {epoch + 1}, step {s + 1} (loss {loss}); lower "
                                   "training_config.learning_rate.soft_start_annealing_schedule.max_learning_rate")
            sums += costs.numpy()
            losses.append(loss)
            bar.update(s + 1, [("loss", loss), ("lr", lr)])
        weights.update(sums)
        mean_loss = float(np.mean(losses))
        done = epoch + 1
        elapsed = time.monotonic() - started
        eta = elapsed / (done - start_epoch) * (epochs - done)
        validate = done >= first_val and (done - first_val) % period == 0
        save = done % interval == 0 or done == epochs
        if validate or save:  # every worker, in step: the forward passes are collective under MirroredStrategy
            bn_warmup.recalibrate(lambda: forward_step(next(batches)[0]), min(steps, RECALIBRATION_BATCHES))
        if not chief:  # the other workers of a multi-node run only train
            continue
        with writer.as_default():
            tf.summary.scalar("loss", mean_loss, step=done)
            tf.summary.scalar("learning_rate", lr, step=done)
        kpi = {"loss": mean_loss}
        if validate:
            result = evaluation.evaluate(evaluation.keras_predictor(model), experiment, "val", batch)
            log.info("\n%s", evaluation.report(result))
            kpi.update(evaluation.kpi(result))
            with writer.as_default():
                tf.summary.scalar("mAP", result["mAP"], step=done)
        if status is not None:
            status.write(Status.RUNNING, "Training loop in progress", epoch=done, max_epoch=epochs, eta=eta, kpi=kpi)
        if save:
            path = os.path.join(weights_dir, f"model_epoch_{done:03d}.tlt")
            with bn_warmup.plain():
                save_model(_stored(model, policy), path, key, _metadata(experiment, done, weights, model), optimizer)
            log.info("Saved checkpoint %s", path)
    final = os.path.join(weights_dir, f"{model_name}.tlt")
    if chief:
        with bn_warmup.plain():
            save_model(_stored(model, policy), final, key, _metadata(experiment, epochs, weights, model))
        log.info("Saved the final model %s", final)
        writer.close()  # an open event writer delays interpreter exit by tens of seconds
    return final


def _stored(model, policy):
    """The model as it is saved: float32 (export, evaluate and resume without --use_amp read it as such)."""
    return with_policy(model, "float32") if policy else model


def _metadata(experiment, epoch: int, weights: CostWeights, model) -> dict:
    from tao_tf.detectnet_v2.model.qat import is_quantized

    return {
        "qat": is_quantized(model),
        "network": "detectnet_v2",
        "epoch": epoch,
        "objective_weights": weights.objective_weights.tolist(),
        "classes": class_names(experiment),
        "input_shape": list(input_shape(experiment)),
    }
