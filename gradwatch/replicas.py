"""Where a capture's state lives, and how replicas pool their sums, under a
`tf.distribute` strategy (or none).

On JAX a distributed step is one program over global arrays (SPMD): its
reductions are global already, so there is nothing to pool, and
`Replicas.of` gives the single-replica case there.
"""

import keras


class Replicas:
    """Where the capture's state lives, and how replicas pool their sums.

    Args:
        strategy: The model's `tf.distribute.Strategy` (the default one when
            training is not distributed), or None off TensorFlow.
    """

    @classmethod
    def of(cls, model):
        """The replicas of `model`'s train step."""
        return cls(getattr(model, "distribute_strategy", None))

    def __init__(self, strategy):
        self.strategy = strategy
        self.count = 1 if strategy is None else strategy.num_replicas_in_sync
        self.distributed = self.count > 1

    def variable(self, shape, dtype="float32"):
        """A non-trainable state variable, zeros to start with.

        Distributed, each replica keeps its own copy (written in the step,
        with the same global numbers on every replica) and a read outside the
        step takes the first replica's.
        """
        import tensorflow as tf

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
        if self.strategy is None:
            return _process_index() == 0
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
        if not self.distributed:
            return values
        import tensorflow as tf

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
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        slot = tf.one_hot(context.replica_id_in_sync_group, self.count)
        return self.sum(slot[:, None] * vector[None, :])


def _process_index():
    """This process's index in a multi-process JAX job (0 alone)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index()
    return 0
