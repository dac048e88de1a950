"""GradWatch under tf.distribute: statistics of the global batch, one writer."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import gradwatch

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_job.py")


def run_job(*args, env=None):
    return subprocess.Popen(
        [sys.executable, JOB, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env,
    )


def finish(process, timeout=300):
    out, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrored")
    finish(run_job("mirrored", root))
    return root


def test_mirrored_strategy_matches_a_single_device(mirrored_runs):
    mirrored = gradwatch.load(str(mirrored_runs / "mirrored"))
    single = gradwatch.load(str(mirrored_runs / "single"))
    assert mirrored.layers == single.layers == ["relu", "tanh", "out"]
    np.testing.assert_array_equal(mirrored.steps, single.steps)
    for name in single.metrics:
        np.testing.assert_allclose(
            mirrored.metric(name), single.metric(name), rtol=2e-4, atol=1e-7, err_msg=name
        )
    # A unit is dead only if it is dead on every replica, counted once.
    np.testing.assert_array_equal(mirrored.metric("dead_units")[:, 0], 5)


def test_mirrored_batchnorm_statistics_pool_the_global_batch(mirrored_runs):
    mirrored = gradwatch.load(str(mirrored_runs / "mirrored_bn"))
    single = gradwatch.load(str(mirrored_runs / "single_bn"))
    bn = single.layers.index("bn")
    # Replicas see different halves (one shifted by +2): a mean of
    # per-replica variances would be far smaller than the pooled variance.
    for name in ("bn_batch_mean", "bn_batch_var"):
        np.testing.assert_allclose(mirrored.metric(name)[0, bn], single.metric(name)[0, bn], rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(mirrored.metric("bn_skew")[0, bn], single.metric("bn_skew")[0, bn], rtol=1e-4)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def multi_worker_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_worker")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = [
        run_job("worker", root / "multi_worker", env=dict(
            os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})))
        for index in range(2)
    ]
    reference = run_job("reference", root / "reference")
    try:
        outputs = [finish(process) for process in workers]
    finally:
        for process in workers:
            process.kill()
    finish(reference)
    return root, outputs


def test_multi_worker_job_is_recorded_once_by_the_chief(multi_worker_runs):
    root, outputs = multi_worker_runs
    # Both workers trained to the end, each a replica of a 2-replica job.
    assert "TRAINED worker 0" in outputs[0] and "TRAINED worker 1" in outputs[1]
    # One event file: worker 1 wrote nothing.
    assert len(list((root / "multi_worker").glob("*tfevents*"))) == 1
    run = gradwatch.load(str(root / "multi_worker"))
    single = gradwatch.load(str(root / "reference"))
    assert run.layers == single.layers == ["bn", "relu", "tanh", "out"]
    np.testing.assert_array_equal(run.steps, np.arange(8))
    np.testing.assert_array_equal(run.steps, single.steps)
    # The workers' halves of each batch pool into the global batch's
    # statistics: the same as one device seeing the whole batch.
    for name in single.metrics:
        np.testing.assert_allclose(run.metric(name), single.metric(name), rtol=2e-4, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(run.metric("dead_units")[:, 1], 5)


class StrategyOf:
    """A stand-in strategy carrying a real TF_CONFIG cluster resolver."""

    num_replicas_in_sync = 2

    def __init__(self, tf_config):
        import tensorflow as tf

        TFConfigClusterResolver = tf.distribute.cluster_resolver.TFConfigClusterResolver

        previous = os.environ.get("TF_CONFIG")
        os.environ["TF_CONFIG"] = json.dumps(tf_config)
        try:
            resolver = TFConfigClusterResolver()
            resolver.task_type, resolver.task_id  # read while TF_CONFIG is set
            self.cluster_resolver = _Frozen(resolver)
        finally:
            if previous is None:
                del os.environ["TF_CONFIG"]
            else:
                os.environ["TF_CONFIG"] = previous


class _Frozen:
    def __init__(self, resolver):
        self.task_type, self.task_id = resolver.task_type, resolver.task_id
        self._spec = resolver.cluster_spec()

    def cluster_spec(self):
        return self._spec


@pytest.mark.parametrize(
    "cluster, task, chief",
    [
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True),
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
    ],
)
def test_only_the_chief_of_a_multi_worker_job_writes(cluster, task, chief):
    from gradwatch.hooks import Replicas

    strategy = StrategyOf({"cluster": cluster, "task": task})
    assert Replicas(strategy).is_chief is chief
