"""The query parameters every route of the plugin reads, checked alike:
bounds, and the errors TensorBoard turns into a 400 naming the parameter."""

from tensorboard import errors

DEFAULT_MAX_COLUMNS = 1000
MAX_COLUMNS_LIMIT = 20_000
MAX_STEP = 2**62


def required(request, name):
    """The non-empty string parameter `name` (at most 4,096 characters)."""
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"Missing parameter {name!r}")
    if len(value) > 4096:
        raise errors.InvalidArgumentError(f"Parameter {name!r} is too long")
    return value


def int_param(request, name, default, low, high):
    """The integer parameter `name` in [low, high]; `default` when absent
    (None: required)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise errors.InvalidArgumentError(f"Missing parameter {name!r}")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgumentError(
            f"Parameter {name!r} must be an integer, got {raw[:100]!r}"
        ) from None
    if not low <= value <= high:
        raise errors.InvalidArgumentError(
            f"Parameter {name!r} must be between {low} and {high}, got {value}"
        )
    return value


def run_tag_filter(run, tags):
    """The data provider's filter for `tags` of one run."""
    from tensorboard.data import provider

    return provider.RunTagFilter(runs=[run], tags=list(tags))
