"""Where a capture's state lives, and how replicas pool their sums, under a
`tf.distribute` strategy (or none)."""

import tensorflow as tf


class Replicas:
    """Where the capture's state lives, and how replicas pool their sums.

    Args:
        strategy: The model's `tf.distribute.Strategy` (the default one when
            training is not distributed).
    """

    def __init__(self, strategy):
        self.strategy = strategy
        self.count = strategy.num_replicas_in_sync
        self.distributed = self.count > 1

    def variable(self, shape, dtype=tf.float32):
        """A non-trainable state variable, zeros to start with.

        Distributed, each replica keeps its own copy (written in the step,
        with the same global numbers on every replica) and a read outside the
        step takes the first replica's.
        """
        with tf.init_scope():
            initial_value = tf.zeros(shape, dtype)
            if not self.distributed:
                return tf.Variable(initial_value, trainable=False)
            with self.strategy.scope():
                return tf.Variable(
                    initial_value,
                    trainable=False,
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )

    @property
    def is_chief(self):
        """Whether this process writes: only the chief of a multi-worker job
        (the `chief` task, else worker 0) does, as Keras' own callbacks."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        task_type = getattr(resolver, "task_type", None)
        if task_type is None:
            return True
        cluster = resolver.cluster_spec().as_dict()
        if "chief" in cluster:
            return task_type == "chief"
        return task_type == "worker" and int(resolver.task_id or 0) == 0

    def sum(self, values):
        """Sums a nest of tensors over replicas (inside the step)."""
        context = tf.distribute.get_replica_context()
        if not self.distributed or context is None:
            return values
        return context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    def gather(self, vector):
        """`[k]` on each replica -> `[replicas, k]` on every replica.

        Each replica fills its own row and the rows are summed: an all-gather
        made of the one collective every strategy has.
        """
        if not self.distributed:
            return vector[None]
        context = tf.distribute.get_replica_context()
        slot = tf.one_hot(context.replica_id_in_sync_group, self.count)
        return self.sum(slot[:, None] * vector[None, :])
