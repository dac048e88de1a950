"""The GradWatch demo gallery: `python -m demo` from the repository root.

It trains a handful of small deep MLPs, each showing one lesson of training
health (vanishing and exploding gradients, dying ReLUs, self-normalisation,
BatchNorm, clipping), logs each as its own run with `gradwatch.GradWatch`,
prints a summary table and opens TensorBoard on the runs. The gallery itself
(`demo.gallery`) is importable, e.g. by tests.
"""
