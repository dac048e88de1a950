"""How findings read: numbers, layer ranges and the one-line message."""

import numpy as np


def render_message(finding, layer_order=None):
    """The one-line message of a finding from its layers, summary and steps.

    Example:

    >>> render_message(Finding("dying_units", "warning", ["relu"], 10, 30, "", "",
    ...     "dead_fraction", ongoing=False, summary="90% of units dead"))
    'layer relu: 90% of units dead at steps 10–30'
    """
    phrase = describe_layers(finding.layers, layer_order)
    if finding.rule == "nonfinite":
        phrase = ""  # The summary names the layer it started in.
    if finding.rule == "init_mismatch":
        when = ""
    elif finding.ongoing:
        when = f" since step {finding.first_step}"
    elif finding.first_step == finding.last_step:
        when = f" at step {finding.first_step}"
    else:
        when = f" at steps {finding.first_step}\u2013{finding.last_step}"
    text = f"{phrase}: {finding.summary}{when}" if phrase else f"{finding.summary}{when}"
    note = finding.details.get("note") if finding.details else None
    if note:
        text += f"; {note}"
    return text


def describe_layers(layers, layer_order=None, limit=3):
    """`"layers dense_1–dense_3, out"`: consecutive layers as ranges.

    Example:

    >>> describe_layers(["h1", "h2", "h3", "out"], ["h0", "h1", "h2", "h3", "out"])
    'layers h1–out'
    """
    layers = list(layers)
    if not layers:
        return ""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    order = {n: i for i, n in enumerate(layer_order or layers)}
    positions = [order.get(n) for n in layers]
    groups = []
    if None in positions:
        groups = [[n] for n in layers]
    else:
        for pos, name in sorted(zip(positions, layers)):
            if groups and pos == groups[-1][-1][0] + 1:
                groups[-1].append((pos, name))
            else:
                groups.append([(pos, name)])
        groups = [[name for _, name in g] for g in groups]
    parts = [g[0] if len(g) == 1 else f"{g[0]}\u2013{g[-1]}" for g in groups]
    if len(parts) > limit + 1:
        parts = parts[:limit] + [f"{len(parts) - limit} more ranges"]
    return "layers " + ", ".join(parts)


def percent(values):
    """`"40%"` or `"40–90%"`: the range of fractions, "?" if none is finite."""
    values = [v for v in values if np.isfinite(v)]
    if not values:
        return "?"
    low, high = round(100 * min(values)), round(100 * max(values))
    return f"{low}%" if low == high else f"{low}\u2013{high}%"


def number(value):
    """Compact number: 3 significant digits, exponent when tiny or huge.

    Example:

    >>> number(0.000123), number(2.5), number(123456.0)
    ('1.2e-4', '2.5', '1.2e5')
    """
    if value is None or not np.isfinite(value):
        return str(value)
    a = abs(value)
    if a != 0 and (a < 1e-2 or a >= 1e5):
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if a >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def number_range(values):
    """`"0.33"` or `"0.33–0.5"`: the range of `values` as `number`s."""
    low, high = number(min(values)), number(max(values))
    return low if low == high else f"{low}\u2013{high}"
