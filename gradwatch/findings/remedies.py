"""What the field's practice suggests for each finding (the README's
remedies column says the same)."""

NONFINITE = (
    "Lower the learning rate, clip gradients (clipnorm=1.0 on the "
    "optimizer), use the init the activation calls for, check the "
    "inputs for NaN/Inf and use a numerically stable loss "
    "(from_logits=True)."
)
VANISHING = (
    "Use a non-saturating activation (ReLU family, ELU, SELU) with "
    "its init (He for ReLU, LeCun for SELU; Glorot for "
    "tanh/sigmoid), or add BatchNormalization before or after "
    "each hidden layer's activation."
)
EXPLODING = (
    "Clip gradients (clipnorm=1.0 or clipvalue on the optimizer), "
    "lower the learning rate, use the init the activation calls for "
    "(He, 2/fan_in, for ReLU), or add BatchNormalization."
)
SATURATION = (
    "Scale the init to the activation (Glorot for sigmoid/tanh), "
    "standardise the inputs, add BatchNormalization before the "
    "activation, or use a non-saturating activation (ReLU family, ELU)."
)
DYING_UNITS = (
    "Try LeakyReLU(negative_slope=0.2) or ELU, He init "
    "(kernel_initializer='he_normal'), or lower the learning rate."
)
BN_CONVERGING = (
    "Train longer before evaluating, or lower BatchNormalization's "
    "momentum (e.g. 0.9) so the moving statistics catch up sooner."
)
BN_SKEW = (
    "Use larger batches, shuffle the training data, and lower "
    "BatchNormalization's momentum (e.g. 0.9) so the moving statistics "
    "keep up; or place BN where its input statistics are stable."
)
# init_mismatch: scheme -> (its name, the variances it accepts (see
# `init_audit.accepted_variances`), its Keras initializer).
INIT_SCHEMES = {
    "glorot": ("Glorot", "1/fan_in to 1/fan_out", "glorot_uniform"),
    "he": ("He", "2/fan_in to 2/fan_out", "he_normal"),
    "lecun": ("LeCun", "1/fan_in", "lecun_normal"),
}
# not_self_normalizing: one step per cause found, then why.
SELU_INIT = "initialise with kernel_initializer='lecun_normal'"
SELU_INPUTS = "standardise the inputs (mean 0, variance 1 per feature)"
SELU_PLAIN = (
    "keep the SELU stack plain (Dense + SELU only: no BatchNormalization, "
    "other activations or skip connections; AlphaDropout instead of Dropout)"
)
SELU_DRIFT = "lower the learning rate"
SELU_WHY = (
    ". Self-normalisation needs standardised inputs, LeCun-normal init and "
    "a plain sequential stack."
)


def init_mismatch(scheme, activation):
    """The remedy for `activation` kernels off the variance of `scheme`."""
    name, formula, keras_name = INIT_SCHEMES[scheme]
    return (
        f"Use kernel_initializer='{keras_name}' ({name}: variance "
        f"{formula}) for {activation} layers."
    )


def not_self_normalizing(steps):
    """The remedy from the steps for the causes found (`SELU_*`)."""
    remedy = "; ".join(steps)
    return remedy[:1].upper() + remedy[1:] + SELU_WHY
