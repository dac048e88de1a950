// Number / step formatting and "nice" axis ticks.

/** Formats a metric value with 3 significant digits (exponent for tiny/huge). */
export function formatValue(v) {
  if (Number.isNaN(v)) return 'n/a (NaN)';
  if (v === Infinity) return '+Infinity (non-finite)';
  if (v === -Infinity) return '-Infinity (non-finite)';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) return v.toExponential(2).replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

/** Short label for an axis tick value (no trailing zeros). */
export function formatTick(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) return v.toExponential(1).replace('.0e', 'e').replace('e+', 'e');
  return String(Number(v.toPrecision(3)));
}

/** Label for a power of ten given its exponent, e.g. -8 -> "1e-8", 2 -> "100". */
export function formatPow10(e) {
  if (e >= -3 && e <= 3) return String(Number(Math.pow(10, e).toPrecision(1)));
  return `1e${e}`;
}

/** Full step number with thousands separators, e.g. 7616 -> "7,616". */
export function formatStep(s) {
  return Math.round(s).toLocaleString('en-US');
}

/**
 * Step label for axis ticks. With `compact` (axis reaching 10,000 or more),
 * every tick uses k/M suffixes, e.g. 2500 -> "2.5k", so one axis has one style.
 */
export function formatStepTick(s, compact) {
  if (!compact) return formatStep(s);
  const a = Math.abs(s);
  if (a >= 1e6) return `${Number((s / 1e6).toPrecision(3))}M`;
  if (a >= 1e3) return `${Number((s / 1e3).toPrecision(3))}k`;
  return formatStep(s);
}

/** Evenly spaced round tick values in [lo, hi], at most about `count` of them. */
export function niceTicks(lo, hi, count, integerOnly = false) {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) return Number.isFinite(lo) ? [lo] : [];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  let step = mag;
  for (const m of [1, 2, 2.5, 5, 10]) {
    step = m * mag;
    if (step >= raw) break;
  }
  if (integerOnly) step = Math.max(1, Math.round(step));
  const ticks = [];
  const first = Math.ceil(lo / step - 1e-9) * step;
  for (let t = first; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}
