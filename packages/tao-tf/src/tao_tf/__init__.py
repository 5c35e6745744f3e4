"""tao-tf: DetectNet_v2 on TensorFlow 2 through tf_keras (the Keras 2 API).

TensorFlow must see `TF_USE_LEGACY_KERAS=1` before its first import, or `tf.keras` resolves
to Keras 3 and tensorflow-model-optimization (pruning, QAT) rejects the models
(shared/research/deps.md section 2). Importing this package sets it, so every entry point
(the `detectnet_v2` script, `tao model detectnet_v2`, library use) gets tf_keras: Python runs
this file before any `tao_tf.*` module, so their `import tensorflow` always comes after it.
Code in this package writes `import tf_keras as keras`, never `tf.keras` (tf.keras resolves
lazily on first access, which is what tensorflow-model-optimization relies on).
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hides the harmless cuInit line on CPU machines

__version__ = "0.1.0"
