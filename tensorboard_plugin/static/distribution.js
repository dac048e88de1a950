// The distributions card: a layer's histogram over time (bins x steps, both
// signs: the "colorful dimension"), every layer's histogram at one step
// (small multiples down the depth) and the per-unit view (units.js).
// Its view, distribution, layer and step live in the view's state (the URL).

import { toNumber } from './api.js';
import { buildScale } from './colors.js';
import { el } from './dom.js';
import { fetchDistribution, fetchDistributionStep } from './fetching.js';
import { formatStep, formatValue } from './format.js';
import { Legend } from './legend.js';
import { drawMatrix, sizedContext } from './matrix.js';
import { theme } from './theme.js';
import { decodeUnits, showUnits } from './units.js';

const VIEWS = [
  { value: 'time', text: 'One layer over time', columns: 'bins' },
  { value: 'depth', text: 'Every layer at one step', columns: 'bins' },
  { value: 'units', text: 'Units of one layer', columns: 'units' },
];
const LABELS = {
  activation_histogram: 'Output distribution',
  gradient_histogram: 'Gradient distribution',
  unit_activity: 'Unit activity',
  unit_saturation: 'Unit saturation',
};
const COLUMNS = { activation_histogram: 'bins', gradient_histogram: 'bins', unit_activity: 'units', unit_saturation: 'units' };
const BIN_ROW_PX = 12;
const BAR_W = 12;
const BAR_H = 36;
// Bars by sign: colour-blind-safe blue and orange (the diverging map's ends), grey zero, magenta non-finite.
// The bins named under the small multiples (the others are between them).
const AXIS_LABELS = { '-1e3': '-1e3', '-1e0': '-1', '-1e-4': '-1e-4', 0: '0', '+1e-4': '+1e-4', '+1e0': '+1', 'NaN/Inf': 'NaN' };
const SIGN_CSS = { '-': '#3182bd', 0: '#757575', '+': '#e6550d', nonfinite: 'rgb(255, 0, 255)' };

function labelled(text, control) {
  const label = el('label', 'gw-field');
  label.append(el('span', 'gw-field-label', text), control);
  return label;
}

function setOptions(select, items, selected) {
  const key = JSON.stringify(items);
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    select.replaceChildren(...items.map((it) => new Option(it.text, it.value)));
  }
  select.value = selected;
}

/** The sign class of a bin label: '-', 0, '+' or 'nonfinite'. */
function signOf(label) {
  if (label === '0') return 0;
  if (label[0] === '-' || label[0] === '+') return label[0];
  return 'nonfinite';
}

/** Rows of a decoded matrix, flipped so that the largest positive bin is on top. */
function binsTopDown(labels) {
  return labels.map((_, i) => labels.length - 1 - i);
}

export class DistributionCard {
  /**
   * @param {HTMLElement} parent
   * @param {object} state the ViewState (its `dist`: {view, name, layer, step})
   * @param {object} on {changed(): save the state, tooltip: the page's Tooltip}
   */
  constructor(parent, state, on) {
    this.state = state;
    this.on = on;
    this.run = null;
    this.layers = [];
    this.names = [];
    this.key = '';
    this.seq = 0;
    this.el = el('section', 'gw-card gw-dist-card');
    this.el.id = 'gw-distributions';
    this.el.hidden = true;
    const head = el('div', 'gw-card-head');
    const title = el('div', 'gw-dist-title', 'Distributions');
    this.runName = el('div', 'gw-dist-run');
    title.appendChild(this.runName);
    const controls = el('div', 'gw-dist-controls');
    this.view = el('select');
    this.view.id = 'gw-dist-view';
    this.name = el('select');
    this.name.id = 'gw-dist-name';
    this.layer = el('select');
    this.layer.id = 'gw-dist-layer';
    this.step = el('select');
    this.step.id = 'gw-dist-step';
    this.stepField = labelled('Step', this.step);
    this.layerField = labelled('Layer', this.layer);
    controls.append(labelled('View', this.view), labelled('Series', this.name), this.layerField, this.stepField);
    this.legend = new Legend(head);
    head.prepend(title, controls);
    this.about = el('div', 'gw-hint');
    this.body = el('div', 'gw-dist-body');
    this.el.append(head, this.about, this.body);
    parent.appendChild(this.el);

    this.view.addEventListener('change', () => this.choose({ view: this.view.value }));
    this.name.addEventListener('change', () => this.choose({ name: this.name.value }));
    this.layer.addEventListener('change', () => this.choose({ layer: this.layer.value }));
    this.step.addEventListener('change', () => this.choose({ step: Number(this.step.value) }));
  }

  /** The user's choice: merges `change` into the state, fixes what no longer fits, fetches. */
  choose(change) {
    Object.assign(this.state.dist, change);
    this.sync();
    this.on.changed();
    this.refresh();
  }

  /** Shows `info` ({run, layers, distributions, lastStep}) of the selected run, or hides the card. */
  setRun(info) {
    const names = info ? info.distributions : [];
    this.el.hidden = !names.length;
    if (!names.length) return;
    this.run = info.run;
    this.runName.textContent = info.run;
    this.layers = info.layers;
    this.names = names;
    this.lastStep = info.lastStep;
    this.sync();
    this.refresh();
  }

  /** Makes the state's choices valid for the run, and the controls show them. */
  sync() {
    const d = this.state.dist;
    const views = VIEWS.filter((v) => this.names.some((n) => COLUMNS[n] === v.columns));
    if (!views.some((v) => v.value === d.view)) d.view = views[0].value;
    const columns = VIEWS.find((v) => v.value === d.view).columns;
    const names = this.names.filter((n) => COLUMNS[n] === columns);
    if (!names.includes(d.name)) d.name = names[0];
    if (!this.layers.includes(d.layer)) d.layer = this.layers[0];
    setOptions(this.view, views.map((v) => ({ value: v.value, text: v.text })), d.view);
    setOptions(this.name, names.map((n) => ({ value: n, text: LABELS[n] || n })), d.name);
    setOptions(this.layer, this.layers.map((l) => ({ value: l, text: l })), d.layer);
    this.layerField.hidden = d.view === 'depth';
    this.stepField.hidden = d.view !== 'depth';
  }

  /** Fetches and draws the view, unless it shows that already. */
  async refresh(force) {
    const d = this.state.dist;
    const key = [this.run, d.view, d.name, d.layer, d.view === 'depth' ? d.step : '', this.lastStep].join('\u0000');
    if (!force && key === this.key) return;
    this.key = key;
    const seq = ++this.seq;
    try {
      const json = d.view === 'depth'
        ? await fetchDistributionStep(this.run, d.name, d.step)
        : await fetchDistribution(this.run, d.name, d.layer);
      if (seq !== this.seq) return;
      this.show(json);
    } catch (err) {
      if (seq !== this.seq) return;
      this.key = '';
      this.legend.update(null);
      this.body.replaceChildren(el('p', 'gw-dist-note gw-error', `Could not load the distribution: ${err.message}`));
    }
  }

  /** Redraws the last answer (after a resize or a theme change). */
  redraw() {
    if (this.json) this.show(this.json);
  }

  show(json) {
    this.json = json;
    const d = this.state.dist;
    const hover = {
      hover: (x, y, title, rows) => this.on.tooltip.show(x, y, title, rows),
      leave: () => this.on.tooltip.hide(),
      pick: (step) => this.choose({ view: 'depth', name: COLUMNS[d.name] === 'bins' ? d.name : this.names[0], step }),
    };
    let scale;
    if (d.view === 'units') {
      scale = showUnits(this.body, decodeUnits(json), hover);
      this.about.textContent = 'Units (rows) x recorded steps: the share of each unit\u2019s outputs above the floor'
        + ' (activity; 0 is a dead unit) or in the flat region (saturation). Click a step for every layer\u2019s histogram.';
    } else if (d.view === 'depth') {
      scale = null;
      this.showDepth(json, hover);
      this.about.textContent = 'Each layer\u2019s histogram at one step, down the depth: signed decades of magnitude,'
        + ' negative (blue) left, exact zero (grey), positive (orange) right. Bars: share of the layer\u2019s elements, each layer to its own largest bin.';
    } else {
      scale = this.showTime(json, hover);
      this.about.textContent = 'Signed decades of magnitude (rows, largest positive on top) x recorded steps;'
        + ' colour: how many elements fall in the bin (log scale; empty bins blank). Click a step for every layer.';
    }
    this.legend.update(scale, scale ? `${LABELS[d.name] || d.name}${d.view === 'units' ? '' : ' (elements per bin)'}` : '');
  }

  showTime(json, on) {
    const labels = (json.labels || []).map(String);
    const steps = (json.steps || []).map(Number);
    const order = binsTopDown(labels);
    const values = new Float64Array(labels.length * steps.length);
    (json.values || []).forEach((row, c) => {
      order.forEach((bin, r) => { values[r * steps.length + c] = toNumber(row[bin]); });
    });
    this.body.replaceChildren();
    if (!steps.length) {
      this.body.appendChild(el('p', 'gw-dist-note', 'Nothing recorded for this layer yet.'));
      return null;
    }
    const layerName = el('div', 'gw-dist-layer-name', String(json.layer));
    const canvas = el('canvas', 'gw-dist-canvas gw-dist-time');
    this.body.append(layerName, canvas);
    const positive = Array.from(values).filter((v) => v > 0);
    const scale = buildScale('log', [Float64Array.from(positive)]);
    const hit = drawMatrix(canvas, {
      values, rows: labels.length, cols: steps.length, rowH: BIN_ROW_PX, steps, scale, emptyZero: true,
      rowLabel: (r) => labels[order[r]],
    });
    const cellAt = (e) => {
      const box = canvas.getBoundingClientRect();
      return hit(e.clientX - box.left, e.clientY - box.top);
    };
    canvas.addEventListener('mousemove', (e) => {
      const cell = cellAt(e);
      if (!cell) return on.leave();
      const row = json.values[cell.col].map(toNumber);
      const total = row.reduce((a, b) => a + b, 0);
      const v = values[cell.row * steps.length + cell.col];
      return on.hover(e.clientX, e.clientY, String(json.layer), [
        ['step', formatStep(steps[cell.col])], ['bin', labels[order[cell.row]]],
        ['elements', formatValue(v)], ['share', total ? `${((100 * v) / total).toFixed(1)}%` : '\u2013'],
      ]);
    });
    canvas.addEventListener('mouseleave', () => on.leave());
    canvas.addEventListener('click', (e) => {
      const cell = cellAt(e);
      if (cell) on.pick(steps[cell.col]);
    });
    return scale;
  }

  showDepth(json, on) {
    const labels = (json.labels || []).map(String);
    const layers = (json.layers || []).map(String);
    const steps = (json.steps || []).map(Number);
    this.state.dist.step = Number(json.step);
    setOptions(this.step, steps.map((s) => ({ value: String(s), text: formatStep(s) })), String(json.step));
    const rows = (json.values || []).map((row) => row.map(toNumber));
    const shares = rows.map((row) => {
      const total = row.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
      return row.map((v) => (total > 0 ? v / total : 0));
    });
    const grid = el('div', 'gw-dist-multiples');
    layers.forEach((layer, i) => {
      const item = el('div', 'gw-dist-multiple');
      const name = el('span', 'gw-dist-multiple-name', layer);
      name.title = layer;
      const canvas = el('canvas', 'gw-dist-bars');
      item.append(name, canvas);
      grid.appendChild(item);
      this.drawBars(canvas, labels, shares[i]);
      canvas.addEventListener('mousemove', (e) => {
        const bin = Math.floor((e.clientX - canvas.getBoundingClientRect().left) / BAR_W);
        if (bin < 0 || bin >= labels.length) return on.leave();
        return on.hover(e.clientX, e.clientY, layer, [
          ['step', formatStep(Number(json.step))], ['bin', labels[bin]],
          ['elements', formatValue(rows[i][bin])], ['share', `${(100 * shares[i][bin]).toFixed(1)}%`],
        ]);
      });
      canvas.addEventListener('mouseleave', () => on.leave());
    });
    const axis = el('div', 'gw-dist-multiple gw-dist-axis');
    const axisCanvas = el('canvas', 'gw-dist-bars');
    axis.append(el('span', 'gw-dist-multiple-name', 'bin'), axisCanvas);
    grid.appendChild(axis);
    this.drawAxis(axisCanvas, labels);
    this.body.replaceChildren(grid);
  }

  /** One layer's bars, scaled to its own largest bin, so that every layer's shape shows. */
  drawBars(canvas, labels, shares) {
    const ctx = sizedContext(canvas, labels.length * BAR_W, BAR_H);
    ctx.fillStyle = theme.plot;
    ctx.fillRect(0, 0, labels.length * BAR_W, BAR_H);
    const top = Math.max(1e-9, ...shares);
    labels.forEach((label, b) => {
      const h = shares[b] > 0 ? Math.max(1, Math.round((shares[b] / top) * (BAR_H - 2))) : 0;
      ctx.fillStyle = SIGN_CSS[signOf(label)];
      ctx.fillRect(b * BAR_W + 1, BAR_H - h, BAR_W - 2, h);
    });
  }

  drawAxis(canvas, labels) {
    const ctx = sizedContext(canvas, labels.length * BAR_W, 16);
    ctx.font = '10px Roboto, "Helvetica Neue", Arial, sans-serif';
    ctx.fillStyle = theme.muted;
    ctx.textBaseline = 'top';
    labels.forEach((label, b) => {
      // The end labels inside the canvas.
      ctx.textAlign = b === 0 ? 'left' : b === labels.length - 1 ? 'right' : 'center';
      const x = b === 0 ? 0 : b === labels.length - 1 ? labels.length * BAR_W : (b + 0.5) * BAR_W;
      if (AXIS_LABELS[label]) ctx.fillText(AXIS_LABELS[label], x, 2);
    });
  }
}
