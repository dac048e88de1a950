"""GradWatch's TensorBoard plugin: the shared summary format, the writer and
the GradWatch tab. Importing it loads no TensorFlow."""
