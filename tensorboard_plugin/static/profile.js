// Depth profile (#gw-profile): forward activation variance and backward
// gradient variance against layer depth at one step, on a log10 y axis.

import { logTicks } from './colors.js';
import { formatStep, formatValue } from './format.js';
import { decodeVector } from './api.js';
import { theme } from './theme.js';

const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const HEIGHT_PLOT = 260;
const LEFT = 62;
const RIGHT = 20;
const TOP = 14;
const LABEL_MAX = 120;

export const PROFILE_SERIES = [
  { key: 'activation_var', role: 'Forward', fallback: 'Activation variance', color: 'forward' },
  { key: 'gradient_var', role: 'Backward', fallback: 'Gradient variance', color: 'backward' },
];

export class ProfileView {
  constructor(parent, tooltip) {
    this.tooltip = tooltip;
    this.data = null;
    this.hoverIndex = -1;
    this.run = null;
    this.step = null;
    this.metricInfo = {};

    this.el = document.createElement('section');
    this.el.id = 'gw-profile';
    this.el.className = 'gw-card gw-profile-card';
    this.el.hidden = true;
    const header = document.createElement('div');
    header.className = 'gw-profile-header';
    this.title = document.createElement('span');
    this.title.className = 'gw-profile-title';
    this.legend = document.createElement('span');
    this.legend.className = 'gw-profile-legend';
    const close = document.createElement('button');
    close.type = 'button';
    close.className = 'gw-close';
    close.textContent = '\u00d7';
    close.title = 'Close depth profile';
    close.setAttribute('aria-label', 'Close depth profile');
    close.addEventListener('click', () => this.close());
    header.append(this.title, this.legend, close);
    this.msg = document.createElement('div');
    this.msg.className = 'gw-panel-msg';
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'gw-profile';
    this.el.append(header, this.msg, this.canvas);
    parent.appendChild(this.el);
    this.ctx = this.canvas.getContext('2d');
    this.onClose = null;

    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => {
      this.tooltip.hide();
      if (this.hoverIndex !== -1) {
        this.hoverIndex = -1;
        this.draw();
      }
    });
    this.width = 0; // the card's width when last drawn
    new ResizeObserver(() => {
      if (!this.el.hidden && this.el.clientWidth !== this.width) this.draw();
    }).observe(this.el);
  }

  get isOpen() {
    return !this.el.hidden;
  }

  /** Opens the card for (run, step) in a loading state. */
  open(run, step, metricInfo) {
    this.run = run;
    this.step = step;
    this.metricInfo = metricInfo || {};
    this.data = null;
    this.el.hidden = false;
    this.title.textContent = `Depth profile \u00b7 ${run} \u00b7 step ${formatStep(step)}`;
    this.title.title = this.title.textContent;
    this.setMessage('Loading\u2026');
    this.canvas.hidden = true;
    this.renderLegend();
  }

  setMessage(text, isError = false) {
    this.msg.textContent = text;
    this.msg.hidden = !text;
    this.msg.classList.toggle('gw-error', isError);
  }

  setError(text) {
    this.data = null;
    this.canvas.hidden = true;
    this.setMessage(text, true);
  }

  setData(json) {
    const layers = Array.isArray(json.layers) ? json.layers.map(String) : [];
    const metrics = json.metrics || {};
    const series = PROFILE_SERIES.map((s) => ({
      ...s,
      present: Array.isArray(metrics[s.key]),
      values: decodeVector(metrics[s.key], layers.length),
    }));
    this.data = { layers, series };
    this.renderLegend();
    if (layers.length === 0) {
      this.setError('No layers in this profile.');
      return;
    }
    const missing = series.filter((s) => !s.present).map((s) => this.seriesLabel(s));
    this.setMessage(missing.length ? `Not recorded for this run: ${missing.join(', ')}` : '');
    this.canvas.hidden = false;
    this.draw();
  }

  close() {
    this.el.hidden = true;
    this.data = null;
    this.tooltip.hide();
    if (this.onClose) this.onClose();
  }

  seriesLabel(s) {
    const info = this.metricInfo[s.key];
    return `${s.role}: ${info && info.label ? info.label : s.fallback}`;
  }

  renderLegend() {
    const items = PROFILE_SERIES.map((s) => {
      const item = document.createElement('span');
      item.className = 'gw-swatch';
      const line = document.createElement('span');
      line.className = 'gw-swatch-line';
      line.style.background = theme[s.color];
      const label = document.createElement('span');
      label.textContent = this.seriesLabel(s);
      item.append(line, label);
      return item;
    });
    this.legend.replaceChildren(...items);
  }

  geometry(left) {
    const n = this.data.layers.length;
    const w = Math.max(200, this.el.clientWidth - 32);
    const plotW = w - left - RIGHT;
    const pad = Math.min(16, plotW / (2 * n));
    const xOf = (i) => left + pad + (n === 1 ? (plotW - 2 * pad) / 2 : (i / (n - 1)) * (plotW - 2 * pad));
    return { n, w, plotW, xOf };
  }

  draw() {
    if (!this.data || this.canvas.hidden) return;
    const { layers, series } = this.data;
    const ctx = this.ctx;
    ctx.font = FONT;
    // Rotated layer labels hang down-left from their tick: reserve room for them.
    const n = layers.length;
    const approxSpacing = n > 1 ? (this.el.clientWidth - 160) / (n - 1) : 100;
    const every = Math.max(1, Math.ceil(14 / Math.max(1e-3, approxSpacing)));
    let longest = 0;
    for (let i = 0; i < n; i += every) longest = Math.max(longest, Math.min(LABEL_MAX, ctx.measureText(layers[i]).width));
    const left = Math.max(LEFT, Math.ceil(longest * Math.SQRT1_2) - 4);
    const { w, plotW, xOf } = this.geometry(left);
    this.width = this.el.clientWidth;
    const bottom = Math.round(longest * Math.SQRT1_2 + 34);
    const h = TOP + HEIGHT_PLOT + bottom;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = FONT;

    // y domain: log10 over all positive finite values of both series.
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of series) {
      for (const v of s.values) {
        if (v > 0 && Number.isFinite(v)) {
          const t = Math.log10(v);
          lo = Math.min(lo, t);
          hi = Math.max(hi, t);
        }
      }
    }
    if (!(lo <= hi)) {
      lo = -1;
      hi = 1;
    }
    if (hi - lo < 1) {
      const mid = (hi + lo) / 2;
      lo = mid - 0.5;
      hi = mid + 0.5;
    } else {
      const padY = (hi - lo) * 0.05;
      lo -= padY;
      hi += padY;
    }
    const yOf = (t) => TOP + HEIGHT_PLOT - ((t - lo) / (hi - lo)) * HEIGHT_PLOT;
    this.geom = { xOf, n };

    // Grid and y axis.
    ctx.strokeStyle = theme.grid;
    ctx.fillStyle = theme.muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const tick of logTicks(lo, hi)) {
      const y = Math.round(yOf(tick.t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + plotW, y);
      ctx.stroke();
      ctx.fillText(tick.label, left - 6, y);
    }
    ctx.strokeStyle = theme.faint;
    ctx.strokeRect(left + 0.5, TOP + 0.5, plotW, HEIGHT_PLOT);
    ctx.save();
    ctx.translate(14, TOP + HEIGHT_PLOT / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillStyle = theme.muted;
    ctx.fillText('variance (log scale)', 0, 0);
    ctx.restore();

    // x axis: layer names, rotated.
    ctx.fillStyle = theme.text;
    ctx.strokeStyle = theme.faint;
    for (let i = 0; i < n; i++) {
      const x = Math.round(xOf(i)) + 0.5;
      const labelled = i % every === 0 || i === this.hoverIndex;
      ctx.beginPath();
      ctx.moveTo(x, TOP + HEIGHT_PLOT);
      ctx.lineTo(x, TOP + HEIGHT_PLOT + (labelled ? 5 : 3));
      ctx.stroke();
      if (!labelled) continue;
      ctx.save();
      ctx.translate(x + 3, TOP + HEIGHT_PLOT + 9);
      ctx.rotate(-Math.PI / 4);
      ctx.textAlign = 'right';
      ctx.textBaseline = 'middle';
      ctx.font = i === this.hoverIndex ? `bold ${FONT}` : FONT;
      ctx.fillText(this.ellipsize(layers[i]), 0, 0);
      ctx.restore();
    }
    ctx.textAlign = 'right';
    ctx.textBaseline = 'bottom';
    ctx.fillStyle = theme.muted;
    ctx.fillText('layer depth \u2192', left + plotW, h - 2);

    if (this.hoverIndex >= 0) {
      const x = Math.round(xOf(this.hoverIndex)) + 0.5;
      ctx.strokeStyle = theme.line;
      ctx.beginPath();
      ctx.moveTo(x, TOP);
      ctx.lineTo(x, TOP + HEIGHT_PLOT);
      ctx.stroke();
    }

    // Series: gaps where a value is missing, non-finite or not positive.
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, TOP - 4, plotW, HEIGHT_PLOT + 8);
    ctx.clip();
    for (const s of series) {
      if (!s.present) continue;
      ctx.strokeStyle = theme[s.color];
      ctx.fillStyle = theme[s.color];
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.beginPath();
      let pen = false;
      for (let i = 0; i < n; i++) {
        const v = s.values[i];
        if (!(v > 0 && Number.isFinite(v))) {
          pen = false;
          continue;
        }
        const x = xOf(i);
        const y = yOf(Math.log10(v));
        if (pen) ctx.lineTo(x, y);
        else ctx.moveTo(x, y);
        pen = true;
      }
      ctx.stroke();
      const r = n <= 80 ? 3 : 0;
      for (let i = 0; i < n; i++) {
        const v = s.values[i];
        if (!(v > 0 && Number.isFinite(v))) continue;
        if (r || i === this.hoverIndex) {
          ctx.beginPath();
          ctx.arc(xOf(i), yOf(Math.log10(v)), i === this.hoverIndex ? 4.5 : r, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
    }
    ctx.restore();
  }

  ellipsize(name) {
    const ctx = this.ctx;
    if (ctx.measureText(name).width <= LABEL_MAX) return name;
    let k = name.length;
    while (k > 1 && ctx.measureText(`${name.slice(0, k)}\u2026`).width > LABEL_MAX) k--;
    return `${name.slice(0, k)}\u2026`;
  }

  onMove(e) {
    if (!this.data || !this.geom) return;
    const rect = this.canvas.getBoundingClientRect();
    const x = e.clientX - rect.left;
    const { xOf, n } = this.geom;
    let best = 0;
    for (let i = 1; i < n; i++) if (Math.abs(xOf(i) - x) < Math.abs(xOf(best) - x)) best = i;
    if (best !== this.hoverIndex) {
      this.hoverIndex = best;
      this.draw();
    }
    const rows = [['run', this.run], ['step', formatStep(this.step)], ['depth', `${best + 1} of ${n}`]];
    for (const s of this.data.series) {
      rows.push([this.seriesLabel(s), s.present ? formatValue(s.values[best]) : 'not recorded']);
    }
    this.tooltip.show(e.clientX, e.clientY, this.data.layers[best], rows);
  }
}
