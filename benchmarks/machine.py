"""What the benchmarks say about the machine they ran on (Linux /proc)."""

import os
import platform


def status_kb(field, pid="self"):
    """A `kB` field of /proc/<pid>/status (`VmRSS`, `VmHWM`), or None where
    there is none."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def description():
    """One line: CPU model, cores and Python version."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def software():
    """Keras' version, its backend and the backend's version."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        version = f"JAX {jax.__version__}"
    else:
        import tensorflow as tf

        version = f"TensorFlow {tf.__version__}"
    return f"Keras {keras.__version__} on {version}"
