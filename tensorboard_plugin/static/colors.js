// Colour maps and metric colour scales.
//
// A scale maps a metric value to an index into a 256-entry colour lookup
// table (LUT), or to one of the special codes below for values that are not
// on the scale. The heatmap precomputes one code per cell, so redrawing is a
// pure table lookup.

import { formatPow10, formatTick, niceTicks } from './format.js';

export const CODE_NAN = -1;
export const CODE_POS_INF = -2;
export const CODE_NEG_INF = -3;

export const NAN_HATCH_CSS = 'repeating-linear-gradient(45deg, #9e9e9e 0 1.5px, #e6e6e6 1.5px 5px)';
export const INF_COLOR = [255, 0, 255]; // magenta: outside every colour map below
export const INF_CSS = 'rgb(255, 0, 255)';

// Both maps stay readable with the common colour-vision deficiencies.
// Sequential: viridis (perceptually uniform, lightness rising monotonically),
// control points at 0, 0.1, ..., 1.
const SEQUENTIAL_STOPS = ['#440154', '#482475', '#414487', '#355f8d', '#2a788e', '#21918c',
  '#22a884', '#44bf70', '#7ad151', '#bddf26', '#fde725'];
// Diverging: blue - light grey - orange, centre at 0.5 (gradwatch/plot.py
// draws with the same stops). Blue and orange stay apart for protanopes,
// deuteranopes and tritanopes; both ends are darker than the centre.
const DIVERGING_STOPS = ['#08519c', '#3182bd', '#6baed6', '#c6dbef', '#f7f7f7', '#fdd0a2',
  '#fd8d3c', '#e6550d', '#a63603'];

export const LUT_SIZE = 256;

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function buildLut(stops) {
  const rgb = stops.map(hexToRgb);
  const lut = new Uint8ClampedArray(LUT_SIZE * 3);
  for (let i = 0; i < LUT_SIZE; i++) {
    const pos = (i / (LUT_SIZE - 1)) * (rgb.length - 1);
    const k = Math.min(rgb.length - 2, Math.floor(pos));
    const f = pos - k;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = rgb[k][c] + (rgb[k + 1][c] - rgb[k][c]) * f;
  }
  return lut;
}

const SEQUENTIAL_LUT = buildLut(SEQUENTIAL_STOPS);
const DIVERGING_LUT = buildLut(DIVERGING_STOPS);

/** Ticks for a log10 axis over [t0, t1] (exponents); labels are the plain values. */
export function logTicks(t0, t1) {
  const lo = Math.ceil(t0 - 1e-9);
  const hi = Math.floor(t1 + 1e-9);
  if (hi - lo >= 1) {
    const every = Math.max(1, Math.ceil((hi - lo + 1) / 7));
    const ticks = [];
    for (let e = lo; e <= hi; e++) {
      if ((e - lo) % every === 0) ticks.push({ t: e, label: formatPow10(e) });
    }
    return ticks;
  }
  // Less than one decade: round values in linear space, placed in log space.
  return niceTicks(Math.pow(10, t0), Math.pow(10, t1), 4)
    .filter((v) => v > 0)
    .map((v) => ({ t: Math.log10(v), label: formatTick(v) }));
}

function ratioTicks(m) {
  if (m >= 1) return logTicks(-m, m);
  // Narrow symmetric range around 1: pick a round factor c, ticks 1/c, 1, c.
  let c = 1.05;
  for (const cand of [1.1, 1.25, 1.5, 2, 3, 5]) if (Math.log10(cand) <= m) c = cand;
  return [1 / c, 1, c].map((v) => ({ t: Math.log10(v), label: formatTick(v) }));
}

function linearTicks(t0, t1, integerOnly) {
  return niceTicks(t0, t1, 5, integerOnly).map((v) => ({ t: v, label: formatTick(v) }));
}

/** [min, max] of fn(x) over the arrays, ignoring non-finite results; null if none. */
function extent(arrays, fn) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const arr of arrays) {
    for (let i = 0; i < arr.length; i++) {
      const t = fn(arr[i]);
      if (Number.isFinite(t)) {
        if (t < lo) lo = t;
        if (t > hi) hi = t;
      }
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

const log10Pos = (v) => (v > 0 ? Math.log10(v) : NaN);
const identity = (v) => v;

/**
 * Builds a colour scale for a metric.
 * @param {string} kind one of log, ratio, signed, fraction, count (else linear)
 * @param {Float64Array[]} arrays all values the scale must cover (shared by runs)
 */
export function buildScale(kind, arrays) {
  let transform = identity;
  let domain;
  let lut = SEQUENTIAL_LUT;
  let ticks;
  let note = '';
  if (kind === 'log') {
    transform = log10Pos;
    domain = extent(arrays, log10Pos) || [-1, 1];
    if (domain[1] - domain[0] < 1e-6) domain = [domain[0] - 0.5, domain[1] + 0.5];
    ticks = logTicks(domain[0], domain[1]);
    note = 'log\u2081\u2080 scale; values \u2264 0 use the bottom colour';
  } else if (kind === 'ratio') {
    transform = log10Pos;
    lut = DIVERGING_LUT;
    const e = extent(arrays, (v) => Math.abs(log10Pos(v)));
    const m = Math.max(e ? e[1] : 0, 0.02);
    domain = [-m, m];
    ticks = ratioTicks(m);
    note = 'log\u2081\u2080 scale centred on 1; values \u2264 0 use the bottom colour';
  } else if (kind === 'signed') {
    lut = DIVERGING_LUT;
    const e = extent(arrays, Math.abs);
    const m = e && e[1] > 0 ? e[1] : 1;
    domain = [-m, m];
    ticks = linearTicks(-m, m, false);
    note = 'linear scale centred on 0';
  } else if (kind === 'fraction') {
    domain = [0, 1];
    ticks = linearTicks(0, 1, false);
  } else if (kind === 'count') {
    const e = extent(arrays, identity);
    domain = [0, Math.max(1, e ? e[1] : 1)];
    ticks = linearTicks(domain[0], domain[1], true);
  } else {
    domain = extent(arrays, identity) || [0, 1];
    if (domain[1] - domain[0] < 1e-12) domain = [domain[0] - 0.5, domain[1] + 0.5];
    ticks = linearTicks(domain[0], domain[1], false);
  }
  const [t0, t1] = domain;
  const span = t1 - t0;
  const lowIndexForInvalid = kind === 'log' || kind === 'ratio' ? 0 : CODE_NAN;

  /** Colour code of a raw value: LUT index 0..255 or a CODE_* constant. */
  function code(v) {
    if (Number.isNaN(v)) return CODE_NAN;
    if (v === Infinity) return CODE_POS_INF;
    if (v === -Infinity) return CODE_NEG_INF;
    const t = transform(v);
    if (Number.isNaN(t)) return lowIndexForInvalid; // e.g. log of a value <= 0
    const f = (t - t0) / span;
    return Math.max(0, Math.min(LUT_SIZE - 1, Math.round(f * (LUT_SIZE - 1))));
  }

  return {
    kind,
    lut,
    domain,
    ticks: ticks.filter((tk) => tk.t >= t0 - 1e-9 && tk.t <= t1 + 1e-9),
    note,
    code,
    /** Position 0..1 along the colour bar of a transformed value. */
    position: (t) => (t - t0) / span,
  };
}

/** CSS colour of LUT entry i. */
export function lutCss(lut, i) {
  return `rgb(${lut[i * 3]}, ${lut[i * 3 + 1]}, ${lut[i * 3 + 2]})`;
}

