// Colour legend: a canvas colour bar with ticks plus swatches for special values.

import { INF_CSS, LUT_SIZE, lutCss, NAN_HATCH_CSS } from './colors.js';
import { theme } from './theme.js';

const BAR_WIDTH = 320;
const BAR_HEIGHT = 12;
const HEIGHT = 34;
const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';

function swatch(background, text, title) {
  const wrap = document.createElement('span');
  wrap.className = 'gw-swatch';
  wrap.title = title;
  const box = document.createElement('span');
  box.className = 'gw-swatch-box';
  box.style.background = background;
  const label = document.createElement('span');
  label.textContent = text;
  wrap.append(box, label);
  return wrap;
}

export class Legend {
  constructor(parent) {
    this.el = document.createElement('div');
    this.el.className = 'gw-legend';
    this.title = document.createElement('div');
    this.title.className = 'gw-legend-title';
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'gw-legend-bar';
    this.note = document.createElement('div');
    this.note.className = 'gw-legend-note';
    const swatches = document.createElement('div');
    swatches.className = 'gw-legend-swatches';
    swatches.append(
      swatch(NAN_HATCH_CSS, 'NaN / not applicable', 'No value for this layer (e.g. saturation of a ReLU layer)'),
      swatch(INF_CSS, '\u00b1Infinity', 'Non-finite value'),
    );
    const barRow = document.createElement('div');
    barRow.className = 'gw-legend-row';
    barRow.append(this.canvas, swatches);
    this.el.append(this.title, barRow, this.note);
    this.el.hidden = true;
    parent.appendChild(this.el);
    this.key = '';
  }

  /** Redraws the bar for `scale` (skipped when nothing changed). */
  update(scale, label) {
    if (!scale) {
      this.el.hidden = true;
      this.key = '';
      return;
    }
    this.el.hidden = false;
    this.title.textContent = label;
    this.note.textContent = scale.note;
    const dpr = window.devicePixelRatio || 1;
    const key = [scale.kind, scale.domain.join(','), label, dpr, theme.text].join('|');
    if (key === this.key) return;
    this.key = key;
    const c = this.canvas;
    c.width = Math.round((BAR_WIDTH + 24) * dpr);
    c.height = Math.round(HEIGHT * dpr);
    c.style.width = `${BAR_WIDTH + 24}px`;
    c.style.height = `${HEIGHT}px`;
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, BAR_WIDTH + 24, HEIGHT);
    const x0 = 12;
    for (let i = 0; i < BAR_WIDTH; i++) {
      const k = Math.round((i / (BAR_WIDTH - 1)) * (LUT_SIZE - 1));
      ctx.fillStyle = lutCss(scale.lut, k);
      ctx.fillRect(x0 + i, 2, 1.5, BAR_HEIGHT);
    }
    ctx.strokeStyle = theme.line;
    ctx.lineWidth = 1;
    ctx.strokeRect(x0 - 0.5, 1.5, BAR_WIDTH + 1, BAR_HEIGHT + 1);
    ctx.fillStyle = theme.text;
    ctx.strokeStyle = theme.muted;
    ctx.font = FONT;
    ctx.textBaseline = 'top';
    for (const tick of scale.ticks) {
      const x = x0 + scale.position(tick.t) * (BAR_WIDTH - 1);
      ctx.beginPath();
      ctx.moveTo(Math.round(x) + 0.5, BAR_HEIGHT + 2);
      ctx.lineTo(Math.round(x) + 0.5, BAR_HEIGHT + 6);
      ctx.stroke();
      const w = ctx.measureText(tick.label).width;
      const lx = Math.max(0, Math.min(BAR_WIDTH + 24 - w, x - w / 2));
      ctx.fillText(tick.label, lx, BAR_HEIGHT + 8);
    }
  }
}
