"""DetectNet_v2 model files: a tf_keras HDF5 model, optionally encrypted with `-k KEY`.

A file holds the architecture, the weights, and under the HDF5 group `tao` the training state
(`metadata` JSON attribute: epoch, objective weights, class names, input shape, ...; and the
optimizer's variables as datasets `optimizer/<i>`), so one file is both the deliverable model
and the resume checkpoint. With a key the whole file is encrypted by tao_core.crypto
(authenticated: a wrong key or a damaged file is a clear error, never garbage weights).
Writes are atomic (temporary file, fsync, rename): a kill leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import tf_keras as keras

from tao_core.crypto import decrypt_bytes, encrypt_bytes, is_encrypted
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes
from tao_tf.detectnet_v2.model.build import CUSTOM_OBJECTS

MODEL_EXTENSIONS = (".tlt", ".hdf5", ".h5")


def save_model(model, path: str, key: str | None, metadata: dict, optimizer=None) -> None:
    """Write `model` (+ metadata, + optimizer variables) to `path`, encrypted when `key` is given."""
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "model.h5")
        model.save(plain, include_optimizer=False, save_format="h5")
        with h5py.File(plain, "a") as f:
            group = f.create_group("tao")
            group.attrs["metadata"] = json.dumps(metadata)
            if optimizer is not None:
                opt = group.create_group("optimizer")
                for i, var in enumerate(optimizer.variables):
                    opt.create_dataset(str(i), data=var.numpy())
        with open(plain, "rb") as f:
            data = f.read()
    atomic_write_bytes(path, encrypt_bytes(data, key) if key else data)


def load_model(path: str, key: str | None):
    """(model, metadata, optimizer variable values) of a file written by `save_model`."""
    import h5py

    if not os.path.isfile(path):
        raise TaoUserError(f"model file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if is_encrypted(data):
        if not key:
            raise TaoUserError(f"{path}: the model is encrypted; pass its key with -k")
        data = decrypt_bytes(data, key, path)
    if not data.startswith(b"\x89HDF\r\n\x1a\n"):
        raise TaoUserError(f"{path}: not a DetectNet_v2 model file (expected an HDF5 .tlt/.hdf5 written by train)")
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "model.h5")
        with open(plain, "wb") as f:
            f.write(data)
        with h5py.File(plain, "r") as f:
            group = f.get("tao")
            metadata = json.loads(group.attrs["metadata"]) if group is not None else {}
            opt_values = []
            if group is not None and "optimizer" in group:
                opt = group["optimizer"]
                opt_values = [np.asarray(opt[str(i)]) for i in range(len(opt))]
        try:
            if metadata.get("qat"):
                from tao_tf.detectnet_v2.model.qat import load_scope

                with load_scope():
                    model = keras.models.load_model(plain, compile=False)
            else:
                model = keras.models.load_model(plain, custom_objects=CUSTOM_OBJECTS, compile=False)
        except (OSError, ValueError) as e:
            raise TaoUserError(f"{path}: cannot load the Keras model ({e})") from None
    return model, metadata, opt_values
