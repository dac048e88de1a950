// The per-unit view: one layer's units x recorded steps of unit_activity
// (0: a dead unit) or unit_saturation (share in the flat region), with which
// units are dead and since when, and a note when the layer has more units
// than GradWatch records.

import { toNumber } from './api.js';
import { buildScale } from './colors.js';
import { el } from './dom.js';
import { formatStep, formatValue } from './format.js';
import { drawMatrix } from './matrix.js';

const MAX_HEIGHT = 480;
const LISTED = 12; // dead units named one by one

/**
 * Decodes a ./distribution answer for units: {steps, units, values (units x
 * steps, row-major), deadSince: per unit a step or null, capped}.
 */
export function decodeUnits(json) {
  const steps = (json.steps || []).map(Number);
  const units = Number(json.units_recorded) || 0;
  const values = new Float64Array(units * steps.length);
  (json.values || []).forEach((row, c) => {
    for (let u = 0; u < units; u++) values[u * steps.length + c] = toNumber(row[u]);
  });
  const deadSince = Array.isArray(json.dead_since) ? json.dead_since.slice(0, units) : null;
  return { name: String(json.name), layer: String(json.layer), steps, units, values, deadSince, capped: Boolean(json.capped) };
}

/** What the dead units are, as text: "3 of 12 units are dead: unit 0 since step 0, ...". */
export function deadText(data) {
  if (!data.deadSince) return '';
  const dead = [];
  data.deadSince.forEach((since, unit) => {
    if (since !== null && since !== undefined) dead.push([unit, Number(since)]);
  });
  if (!dead.length) return `No unit is dead at the last recorded step (of ${data.units}).`;
  const named = dead.slice(0, LISTED).map(([unit, since]) => `unit ${unit} since step ${formatStep(since)}`);
  const more = dead.length > LISTED ? `, and ${dead.length - LISTED} more` : '';
  return `${dead.length} of ${data.units} units are dead at the last recorded step (\u25b6 marks them): `
    + `${named.join(', ')}${more}.`;
}

/**
 * Shows `data` (decodeUnits) in `host`.
 * @param {object} on {hover(x, y, title, rows), leave(), pick(step)}
 * @returns {object | null} the colour scale, for the legend
 */
export function showUnits(host, data, on) {
  host.replaceChildren();
  const what = data.name === 'unit_activity' ? 'activity' : 'saturation';
  if (!data.units || !data.steps.length) {
    host.appendChild(el('p', 'gw-dist-note', data.name === 'unit_activity'
      ? 'No unit activity for this layer: its activation has no floor (activity is defined for ReLU-like layers).'
      : 'No unit saturation for this layer: its activation has no flat region (saturation is defined for sigmoid, tanh and the like).'));
    return null;
  }
  if (data.capped) {
    host.appendChild(el('p', 'gw-dist-note gw-dist-capped',
      'This layer has 256 units or more: GradWatch records its first 256 (metadata.UNITS_SHOWN), shown here.'));
  }
  const dead = deadText(data);
  if (dead) host.appendChild(el('p', 'gw-dist-note gw-dist-dead', dead));
  const canvas = el('canvas', 'gw-dist-canvas gw-units-canvas');
  host.appendChild(canvas);
  const scale = buildScale('fraction', [data.values]);
  const rowH = Math.max(1, Math.min(12, Math.floor(MAX_HEIGHT / data.units)));
  const labelEvery = Math.ceil(14 / rowH);
  const hit = drawMatrix(canvas, {
    values: data.values, rows: data.units, cols: data.steps.length, rowH, steps: data.steps, scale,
    rowLabel: (u) => (u % labelEvery === 0 ? `unit ${u}` : ''),
    marked: (data.deadSince || []).flatMap((since, u) => (since === null ? [] : [u])),
  });
  canvas.addEventListener('mousemove', (e) => {
    const box = canvas.getBoundingClientRect();
    const cell = hit(e.clientX - box.left, e.clientY - box.top);
    if (!cell) return on.leave();
    const v = data.values[cell.row * data.steps.length + cell.col];
    const rows = [['layer', data.layer], ['step', formatStep(data.steps[cell.col])], [what, formatValue(v)]];
    if (data.deadSince && data.deadSince[cell.row] !== null) rows.push(['dead since step', formatStep(data.deadSince[cell.row])]);
    return on.hover(e.clientX, e.clientY, `unit ${cell.row}`, rows);
  });
  canvas.addEventListener('mouseleave', () => on.leave());
  canvas.addEventListener('click', (e) => {
    const box = canvas.getBoundingClientRect();
    const cell = hit(e.clientX - box.left, e.clientY - box.top);
    if (cell) on.pick(data.steps[cell.col]);
  });
  return scale;
}
