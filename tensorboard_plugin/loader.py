"""Entry point TensorBoard loads at start-up (`tensorboard_plugins`).

TensorBoard keeps only 100 points per third-party tensor series by default
(10 with --load_fast=false), reservoir-sampled. A heatmap needs every recorded
step, so unless the user chose a value for `gradwatch` with
`--samples_per_plugin`, this loader raises GradWatch's to
`metadata.SAMPLES_PER_SERIES` before the data server starts.
"""

from tensorboard.plugins import base_plugin

from . import metadata


class GradWatchLoader(base_plugin.TBLoader):
    """Adjusts GradWatch's sampling, then loads the plugin."""

    def fix_flags(self, flags):
        samples = getattr(flags, "samples_per_plugin", None)
        if samples is None:
            samples = {}
            flags.samples_per_plugin = samples
        samples.setdefault(metadata.PLUGIN_NAME, metadata.SAMPLES_PER_SERIES)

    def load(self, context):
        from .plugin import GradWatchPlugin  # Deferred: keeps start-up light.

        return GradWatchPlugin(context)
