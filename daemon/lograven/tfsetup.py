"""One place that imports TensorFlow/Keras for training, quietly and reproducibly.

Serving never calls this: the daemon runs the exported weights with numpy.
"""
from __future__ import annotations

import os

from lograven.errors import LogravenError

_done = False


def keras_session(seed: int = 42, threads: int | None = None):
    """Import Keras (TensorFlow backend) with quiet logs and fixed seeds; return the module."""
    global _done
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import keras
        import tensorflow as tf
    except ImportError as e:  # serving-only installs may lack TensorFlow
        import sys

        pip = f"{sys.executable} -m pip install"  # this environment's pip (/opt/lograven's, not the system's)
        raise LogravenError(
            f"training needs TensorFlow, which is not installed in this environment ({sys.prefix}: {e}); install "
            f"it with `{pip} tensorflow-cpu` (x86_64 Linux) or `{pip} tensorflow`"
        ) from e
    if not _done:
        n = threads or int(os.environ.get("LOGRAVEN_TRAIN_THREADS", "0")) or None
        if n:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        tf.get_logger().setLevel("ERROR")
        _done = True
    keras.utils.set_random_seed(seed)
    return keras
