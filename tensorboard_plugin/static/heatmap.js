// One heatmap panel: layers (rows, depth order) x training steps (linear axis).
//
// Cells are rasterised once into an offscreen canvas (one device pixel per
// screen column, one pixel per layer row) whenever data, colour scale, filter,
// zoom or width change; scrolling and hovering only blit that image, so the
// view stays smooth with hundreds of layers. The canvas is sticky inside a
// scroll container whose spacer provides the native vertical scrollbar.

import { CODE_NEG_INF, CODE_POS_INF, INF_COLOR } from './colors.js';
import { formatStep, formatStepTick, niceTicks } from './format.js';
import { theme } from './theme.js';

const FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const TOP = 6;
const BOTTOM = 30;
const RIGHT = 12;
const DRAG_THRESHOLD = 5;

/** Indices of layers whose name contains `filter` (case-insensitive). */
export function filterRows(layers, filter) {
  const needle = filter.trim().toLowerCase();
  const rows = [];
  for (let i = 0; i < layers.length; i++) {
    if (!needle || layers[i].toLowerCase().includes(needle)) rows.push(i);
  }
  return rows;
}

/** Step extent [first, last) covered by decoded heatmap data, or null. */
export function dataExtent(data) {
  if (!data || data.steps.length === 0) return null;
  return [data.starts[0], data.ends[data.ends.length - 1]];
}

function makeHatch(ctx, dpr) {
  const size = Math.max(6, Math.round(6 * dpr));
  const tile = document.createElement('canvas');
  tile.width = size;
  tile.height = size;
  const t = tile.getContext('2d');
  t.fillStyle = '#e6e6e6';
  t.fillRect(0, 0, size, size);
  t.strokeStyle = '#9e9e9e';
  t.lineWidth = Math.max(1, dpr * 1.2);
  t.beginPath();
  for (const o of [-size, 0, size]) {
    t.moveTo(o, size);
    t.lineTo(o + size, 0);
  }
  t.stroke();
  return ctx.createPattern(tile, 'repeat');
}

export class HeatmapView {
  /**
   * @param {HTMLElement} parent
   * @param {string} run
   * @param {object} cb callbacks: hover(view, hit, event), leave(), click(view, col),
   *   zoom(lo, hi), scroll(view, scrollTop)
   */
  constructor(parent, run, cb) {
    this.run = run;
    this.cb = cb;
    this.data = null;
    this.scale = null;
    this.codes = null;
    this.filter = '';
    this.rows = [];
    this.domain = [0, 1];
    this.rowH = 12;
    this.maxBodyH = 480;
    this.marker = null;
    this.regions = [];
    this.hover = null;
    this.drag = null;
    this.width = 0;
    this.dpr = window.devicePixelRatio || 1;
    this.labelCache = new Map();
    this.longestLabel = 0;
    this.framePending = false;
    this.layoutNote = false;

    this.el = document.createElement('section');
    this.el.className = 'gw-panel';
    this.el.setAttribute('data-run', run);
    const header = document.createElement('div');
    header.className = 'gw-panel-header';
    const title = document.createElement('span');
    title.className = 'gw-panel-title';
    title.textContent = run;
    title.title = run;
    this.meta = document.createElement('span');
    this.meta.className = 'gw-panel-meta';
    this.loading = document.createElement('span');
    this.loading.className = 'gw-panel-loading';
    this.loading.textContent = 'Loading\u2026';
    this.loading.hidden = true;
    header.append(title, this.meta, this.loading);
    this.msg = document.createElement('div');
    this.msg.className = 'gw-panel-msg';
    this.msg.hidden = true;
    this.scroller = document.createElement('div');
    this.scroller.className = 'gw-scroll';
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'gw-heatmap';
    this.spacer = document.createElement('div');
    this.spacer.className = 'gw-spacer';
    this.scroller.append(this.canvas, this.spacer);
    this.el.append(header, this.msg, this.scroller);
    parent.appendChild(this.el);
    this.off = document.createElement('canvas');
    this.ctx = this.canvas.getContext('2d');
    this.hatch = null;

    this.scroller.addEventListener('scroll', () => {
      this.requestDraw();
      this.cb.scroll(this, this.scroller.scrollTop);
    }, { passive: true });
    this.canvas.addEventListener('mousemove', (e) => this.onMove(e));
    this.canvas.addEventListener('mouseleave', () => this.onLeave());
    this.canvas.addEventListener('mousedown', (e) => this.onDown(e));
    this.resizeObserver = new ResizeObserver(() => {
      const w = this.scroller.clientWidth;
      if (w > 0 && w !== this.width) this.refresh();
    });
    this.resizeObserver.observe(this.scroller);
  }

  destroy() {
    this.resizeObserver.disconnect();
    this.el.remove();
  }

  /** Width of the layer-name column: fits the longest name, within limits. */
  labelWidth(w) {
    return Math.round(Math.max(56, Math.min(this.longestLabel + 14, 180, w * 0.32)));
  }

  measureLabels() {
    this.longestLabel = 0;
    if (!this.data) return;
    this.ctx.font = FONT;
    for (const name of this.data.layers) {
      this.longestLabel = Math.max(this.longestLabel, this.ctx.measureText(name).width);
    }
  }

  /** Sets any of: data, scale, filter, domain, rowH, maxBodyH, marker, regions; redraws what changed. */
  set(props) {
    let codes = false;
    let rows = false;
    let image = false;
    let layout = false;
    if ('data' in props && props.data !== this.data) {
      this.data = props.data;
      this.labelCache.clear();
      this.measureLabels();
      codes = rows = layout = true;
      this.updateMeta();
    }
    if ('scale' in props && props.scale !== this.scale) {
      this.scale = props.scale;
      codes = true;
    }
    if ('filter' in props && props.filter !== this.filter) {
      this.filter = props.filter;
      rows = true;
    }
    if ('domain' in props && (props.domain[0] !== this.domain[0] || props.domain[1] !== this.domain[1])) {
      this.domain = props.domain.slice();
      image = true;
    }
    if ('rowH' in props && props.rowH !== this.rowH) {
      this.rowH = props.rowH;
      layout = true;
    }
    if ('maxBodyH' in props && props.maxBodyH !== this.maxBodyH) {
      this.maxBodyH = props.maxBodyH;
      layout = true;
    }
    let draw = false;
    if ('marker' in props && props.marker !== this.marker) {
      this.marker = props.marker;
      draw = true;
    }
    if ('regions' in props && props.regions !== this.regions) {
      this.regions = props.regions || [];
      draw = true;
    }
    if (codes || rows || image || layout) this.refresh({ codes, rows });
    else if (draw) this.requestDraw();
  }

  updateMeta() {
    const d = this.data;
    if (!d || d.steps.length === 0) {
      this.meta.textContent = '';
      return;
    }
    const first = d.ranges[0][0];
    const last = d.ranges[d.ranges.length - 1][1];
    let text = `${d.layers.length} layers \u00b7 ${formatStep(d.totalSteps)} recorded steps`;
    if (d.zoomed) text += ` \u00b7 ${formatStep(d.rangeSteps)} of them in view (${formatStep(first)}\u2013${formatStep(last)})`;
    else text += ` (${formatStep(first)}\u2013${formatStep(last)})`;
    if (d.steps.length < (d.zoomed ? d.rangeSteps : d.totalSteps)) text += ` \u00b7 ${formatStep(d.steps.length)} columns`;
    this.meta.textContent = text;
  }

  setLoading(on) {
    this.loading.hidden = !on;
  }

  /** Shows a status / error line above the canvas ('' hides it). */
  showMessage(text, isError = false) {
    this.layoutNote = false;
    this.msg.textContent = text || '';
    this.msg.hidden = !text;
    this.msg.classList.toggle('gw-error', Boolean(isError));
  }

  refresh({ codes = false, rows = false } = {}) {
    const d = this.data;
    if (codes && d && this.scale) {
      const n = d.values.length;
      if (!this.codes || this.codes.length !== n) this.codes = new Int16Array(n);
      for (let i = 0; i < n; i++) this.codes[i] = this.scale.code(d.values[i]);
    }
    if (rows) this.rows = d ? filterRows(d.layers, this.filter) : [];
    this.layout();
    this.rebuildImage();
    this.draw();
  }

  layout() {
    this.dpr = window.devicePixelRatio || 1;
    const w = this.scroller.clientWidth || this.el.clientWidth || 600;
    this.width = w;
    const n = this.rows.length;
    const d = this.data;
    const hasRows = Boolean(d && n > 0 && d.steps.length > 0);
    this.scroller.hidden = !hasRows;
    let note = '';
    if (d && d.steps.length === 0) note = 'No steps recorded yet.';
    else if (d && n === 0) note = d.layers.length ? 'No layers match the filter.' : 'No layers recorded.';
    if (note) {
      this.showMessage(note);
      this.layoutNote = true;
    } else if (this.layoutNote) {
      this.showMessage('');
      this.layoutNote = false;
    }
    if (!hasRows) return;
    const contentH = n * this.rowH;
    const bodyH = Math.min(contentH, this.maxBodyH);
    const viewH = TOP + bodyH + BOTTOM;
    this.labelW = this.labelWidth(w);
    this.bodyX = this.labelW;
    this.bodyW = Math.max(10, w - this.labelW - RIGHT);
    this.bodyH = bodyH;
    this.viewH = viewH;
    this.scroller.style.height = `${viewH}px`;
    this.spacer.style.height = `${Math.max(0, contentH - bodyH)}px`;
    const cw = Math.round(w * this.dpr);
    const ch = Math.round(viewH * this.dpr);
    if (this.canvas.width !== cw || this.canvas.height !== ch) {
      this.canvas.width = cw;
      this.canvas.height = ch;
      this.hatch = null;
    }
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${viewH}px`;
  }

  rebuildImage() {
    const d = this.data;
    const n = this.rows.length;
    this.colOf = null;
    if (!d || !this.codes || n === 0 || !this.bodyW) return;
    const wd = Math.max(1, Math.round(this.bodyW * this.dpr));
    const ncols = d.steps.length;
    const nl = d.layers.length;
    const colOf = new Int32Array(wd).fill(-1);
    const [d0, d1] = this.domain;
    const per = (d1 - d0) / wd;
    let c = 0;
    let px0 = -1;
    let px1 = -1;
    for (let px = 0; px < wd && ncols > 0; px++) {
      const s = d0 + (px + 0.5) * per;
      while (c < ncols - 1 && s >= d.ends[c]) c++;
      if (s >= d.starts[c] && s < d.ends[c]) {
        colOf[px] = c;
        if (px0 < 0) px0 = px;
        px1 = px + 1;
      }
    }
    this.colOf = colOf;
    this.dataPx = px0 >= 0 ? [px0, px1] : null;
    if (this.off.width !== wd || this.off.height !== n) {
      this.off.width = wd;
      this.off.height = n;
    }
    const octx = this.off.getContext('2d');
    const img = octx.createImageData(wd, n);
    const buf = img.data;
    const lut = this.scale.lut;
    const codes = this.codes;
    let o = 0;
    for (let r = 0; r < n; r++) {
      const layer = this.rows[r];
      for (let px = 0; px < wd; px++, o += 4) {
        const col = colOf[px];
        if (col < 0) continue;
        const code = codes[col * nl + layer];
        if (code >= 0) {
          buf[o] = lut[code * 3];
          buf[o + 1] = lut[code * 3 + 1];
          buf[o + 2] = lut[code * 3 + 2];
          buf[o + 3] = 255;
        } else if (code === CODE_POS_INF || code === CODE_NEG_INF) {
          buf[o] = INF_COLOR[0];
          buf[o + 1] = INF_COLOR[1];
          buf[o + 2] = INF_COLOR[2];
          buf[o + 3] = 255;
        } // NaN (CODE_NAN) stays transparent: the hatch underneath shows through.
      }
    }
    octx.putImageData(img, 0, 0);
  }

  requestDraw() {
    if (this.framePending) return;
    this.framePending = true;
    requestAnimationFrame(() => {
      this.framePending = false;
      this.draw();
    });
  }

  stepToX(s) {
    const [d0, d1] = this.domain;
    return this.bodyX + ((s - d0) / (d1 - d0)) * this.bodyW;
  }

  xToStep(x) {
    const [d0, d1] = this.domain;
    return d0 + ((x - this.bodyX) / this.bodyW) * (d1 - d0);
  }

  visibleRowRange() {
    const top = this.scroller.scrollTop;
    const r0 = Math.max(0, Math.floor(top / this.rowH));
    const r1 = Math.min(this.rows.length, Math.ceil((top + this.bodyH) / this.rowH));
    return [r0, r1, top];
  }

  draw() {
    const d = this.data;
    if (!d || this.rows.length === 0 || this.scroller.hidden) return;
    const ctx = this.ctx;
    const dpr = this.dpr;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = theme.card;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const bx = this.bodyX;
    const bw = this.bodyW;
    const bh = this.bodyH;
    const [r0, r1, top] = this.visibleRowRange();
    const rowH = this.rowH;
    const yOf = (r) => TOP + r * rowH - top;

    // Cells.
    ctx.save();
    ctx.beginPath();
    ctx.rect(bx, TOP, bw, bh);
    ctx.clip();
    ctx.fillStyle = theme.plot;
    ctx.fillRect(bx, TOP, bw, bh);
    if (this.colOf && r1 > r0) {
      if (this.dataPx) {
        if (!this.hatch) this.hatch = makeHatch(ctx, dpr);
        ctx.save();
        ctx.setTransform(1, 0, 0, 1, 0, 0);
        ctx.fillStyle = this.hatch;
        ctx.fillRect(bx * dpr + this.dataPx[0], yOf(r0) * dpr,
          this.dataPx[1] - this.dataPx[0], (r1 - r0) * rowH * dpr);
        ctx.restore();
      }
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(this.off, 0, r0, this.off.width, r1 - r0, bx, yOf(r0), bw, (r1 - r0) * rowH);
    }
    this.drawRegions(r0, r1, yOf);
    if (this.marker !== null && this.marker !== undefined) {
      const x = Math.round(this.stepToX(this.marker)) + 0.5;
      if (x >= bx && x <= bx + bw) {
        ctx.lineWidth = 3;
        ctx.strokeStyle = 'rgba(255,255,255,0.9)';
        ctx.beginPath();
        ctx.moveTo(x, TOP);
        ctx.lineTo(x, TOP + bh);
        ctx.stroke();
        ctx.lineWidth = 1;
        ctx.strokeStyle = '#212121';
        ctx.setLineDash([4, 3]);
        ctx.stroke();
        ctx.setLineDash([]);
      }
    }
    if (this.hover && !this.drag) {
      const { r, col } = this.hover;
      let x0 = Math.max(bx, this.stepToX(d.starts[col]));
      let x1 = Math.min(bx + bw, this.stepToX(d.ends[col]));
      if (x1 - x0 < 3) {
        const mid = (x0 + x1) / 2;
        x0 = mid - 1.5;
        x1 = mid + 1.5;
      }
      const y = yOf(r);
      ctx.lineWidth = 2;
      ctx.strokeStyle = '#ffffff';
      ctx.strokeRect(x0, y, x1 - x0, rowH);
      ctx.lineWidth = 1;
      ctx.strokeStyle = '#000000';
      ctx.strokeRect(x0 - 1, y - 1, x1 - x0 + 2, rowH + 2);
    }
    if (this.drag) {
      const a = Math.min(this.drag.x0, this.drag.x1);
      const b = Math.max(this.drag.x0, this.drag.x1);
      ctx.fillStyle = 'rgba(33, 150, 243, 0.25)';
      ctx.fillRect(a, TOP, b - a, bh);
      ctx.strokeStyle = '#1976d2';
      ctx.lineWidth = 1;
      ctx.strokeRect(a + 0.5, TOP + 0.5, b - a - 1, bh - 1);
    }
    ctx.restore();
    ctx.strokeStyle = theme.line;
    ctx.lineWidth = 1;
    ctx.strokeRect(bx - 0.5, TOP - 0.5, bw + 1, bh + 1);

    this.drawLabels(r0, r1, yOf);
    this.drawAxis();
    this.drawScrollIndicator(top);
  }

  /** Index of the column whose step span holds step `s` (nearest column outside the data). */
  columnAt(s) {
    const d = this.data;
    let lo = 0;
    let hi = d.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (d.starts[mid] <= s) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Outlines finding regions: `regions` is a list of
   * {layers: Set of layer names, first, last (steps), severity, selected}.
   * Each run of consecutive visible rows of a region gets one rectangle from
   * the start of the column holding `first` to the end of the one holding `last`.
   */
  drawRegions(r0, r1, yOf) {
    const d = this.data;
    if (!this.regions.length || !d || d.steps.length === 0 || r1 <= r0) return;
    const ctx = this.ctx;
    const bx = this.bodyX;
    const bw = this.bodyW;
    for (const region of this.regions) {
      let x0 = this.stepToX(d.starts[this.columnAt(region.first)]);
      let x1 = this.stepToX(d.ends[this.columnAt(region.last)]);
      if (x1 < bx || x0 > bx + bw) continue;
      x0 = Math.max(bx + 1, x0);
      x1 = Math.min(bx + bw - 1, x1);
      if (x1 - x0 < 4) {
        const mid = (x0 + x1) / 2;
        x0 = mid - 2;
        x1 = mid + 2;
      }
      const color = region.severity === 'warning' ? '#d50000' : '#1565c0';
      const width = region.selected ? 3 : 2;
      let r = r0;
      while (r < r1) {
        if (!region.layers.has(d.layers[this.rows[r]])) {
          r++;
          continue;
        }
        let end = r;
        while (end + 1 < r1 && region.layers.has(d.layers[this.rows[end + 1]])) end++;
        const y0 = yOf(r) + 1;
        const y1 = yOf(end + 1) - 1;
        ctx.setLineDash(region.severity === 'warning' ? [] : [5, 3]);
        ctx.lineWidth = width + 2;
        ctx.strokeStyle = 'rgba(255,255,255,0.85)';
        ctx.strokeRect(x0, y0, x1 - x0, Math.max(2, y1 - y0));
        ctx.lineWidth = width;
        ctx.strokeStyle = color;
        ctx.strokeRect(x0, y0, x1 - x0, Math.max(2, y1 - y0));
        ctx.setLineDash([]);
        r = end + 1;
      }
    }
  }

  /** Scrolls the rows so that `layer` (a name) is in view; returns whether it is shown. */
  scrollToLayer(layer) {
    if (!this.data) return false;
    const r = this.rows.findIndex((i) => this.data.layers[i] === layer);
    if (r < 0) return false;
    const top = r * this.rowH;
    const view = this.scroller.scrollTop;
    if (top < view || top + this.rowH > view + this.bodyH) {
      this.scroller.scrollTop = Math.max(0, top - this.bodyH / 3);
      this.requestDraw();
    }
    return true;
  }

  /** Thin position indicator at the right edge when rows overflow (also for overlay scrollbars). */
  drawScrollIndicator(top) {
    const contentH = this.rows.length * this.rowH;
    if (contentH <= this.bodyH + 0.5) return;
    const ctx = this.ctx;
    const x = this.bodyX + this.bodyW + 5;
    ctx.fillStyle = theme.grid;
    ctx.fillRect(x, TOP, 4, this.bodyH);
    const h = Math.max(12, (this.bodyH / contentH) * this.bodyH);
    const y = TOP + (top / (contentH - this.bodyH)) * (this.bodyH - h);
    ctx.fillStyle = theme.faint;
    ctx.fillRect(x, y, 4, h);
  }

  ellipsize(name, maxW) {
    const key = `${maxW}|${name}`;
    let out = this.labelCache.get(key);
    if (out !== undefined) return out;
    const ctx = this.ctx;
    if (ctx.measureText(name).width <= maxW) {
      out = name;
    } else {
      let lo = 0;
      let hi = name.length;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (ctx.measureText(`${name.slice(0, mid)}\u2026`).width <= maxW) lo = mid;
        else hi = mid - 1;
      }
      out = `${name.slice(0, lo)}\u2026`;
    }
    this.labelCache.set(key, out);
    return out;
  }

  drawLabels(r0, r1, yOf) {
    const ctx = this.ctx;
    const every = Math.max(1, Math.ceil(12 / this.rowH));
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, 0, this.labelW, this.bodyH + TOP + 3);
    ctx.clip();
    ctx.font = FONT;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    const maxW = this.labelW - 10;
    const hoverRow = this.hover ? this.hover.r : -1;
    for (let r = r0; r < r1; r++) {
      if (r % every !== 0 && r !== hoverRow) continue;
      if (every > 1 && r !== hoverRow && hoverRow >= 0 && Math.abs(r - hoverRow) < every) continue;
      const name = this.data.layers[this.rows[r]];
      ctx.fillStyle = r === hoverRow ? theme.strong : theme.text;
      ctx.font = r === hoverRow ? `bold ${FONT}` : FONT;
      ctx.fillText(this.ellipsize(name, maxW), this.labelW - 6, yOf(r) + this.rowH / 2);
    }
    ctx.restore();
  }

  drawAxis() {
    const ctx = this.ctx;
    const y = TOP + this.bodyH;
    const [d0, d1] = this.domain;
    ctx.font = FONT;
    ctx.fillStyle = theme.muted;
    ctx.strokeStyle = theme.faint;
    ctx.lineWidth = 1;
    ctx.textBaseline = 'top';
    ctx.textAlign = 'center';
    const ticks = niceTicks(d0, d1, Math.max(2, Math.floor(this.bodyW / 90)), true);
    let lastRight = -Infinity;
    // k/M labels on long axes, unless zoomed in so far that they would repeat.
    const compactLabels = ticks.map((t) => formatStepTick(t, true));
    const compact = Math.max(Math.abs(d0), Math.abs(d1)) >= 1e4
      && new Set(compactLabels).size === compactLabels.length;
    for (const t of ticks) {
      const x = Math.round(this.stepToX(t)) + 0.5;
      if (x < this.bodyX - 0.5 || x > this.bodyX + this.bodyW + 0.5) continue;
      ctx.beginPath();
      ctx.moveTo(x, y + 1);
      ctx.lineTo(x, y + 5);
      ctx.stroke();
      const label = formatStepTick(t, compact);
      const w = ctx.measureText(label).width;
      if (x - w / 2 < lastRight + 6) continue;
      ctx.fillText(label, x, y + 7);
      lastRight = x + w / 2;
    }
    ctx.textAlign = 'right';
    ctx.fillStyle = theme.muted;
    ctx.fillText('step \u2192', this.labelW - 6, y + 7);
  }

  /** Maps a canvas-relative point to a cell, a layer label, or nothing. */
  hitTest(x, y) {
    if (!this.data || !this.colOf || y < TOP || y >= TOP + this.bodyH) return null;
    const r = Math.floor((y - TOP + this.scroller.scrollTop) / this.rowH);
    if (r < 0 || r >= this.rows.length) return null;
    const layer = this.rows[r];
    if (x < this.bodyX) return { kind: 'label', r, layer, name: this.data.layers[layer] };
    if (x >= this.bodyX + this.bodyW) return null;
    const px = Math.min(this.colOf.length - 1, Math.floor((x - this.bodyX) * this.dpr));
    const col = this.colOf[px];
    return col < 0 ? null : this.cellHit(r, col);
  }

  /** The hit of row `r` (of the filtered rows), column `col`: also the keyboard cursor's (cursor.js). */
  cellHit(r, col) {
    const d = this.data;
    const layer = this.rows[r];
    return {
      kind: 'cell',
      r,
      col,
      layer,
      name: d.layers[layer],
      step: d.steps[col],
      range: d.ranges[col],
      value: d.values[col * d.layers.length + layer],
    };
  }

  pointer(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [e.clientX - rect.left, e.clientY - rect.top];
  }

  onMove(e) {
    if (this.drag) return;
    const [x, y] = this.pointer(e);
    const hit = this.hitTest(x, y);
    const prev = this.hover;
    this.hover = hit && hit.kind === 'cell' ? { r: hit.r, col: hit.col } : null;
    this.canvas.style.cursor = hit && hit.kind === 'cell' ? 'crosshair' : 'default';
    if (!prev !== !this.hover || (prev && (prev.r !== this.hover.r || prev.col !== this.hover.col))) this.requestDraw();
    if (hit) this.cb.hover(this, hit, e);
    else this.cb.leave();
  }

  onLeave() {
    if (this.drag) return;
    if (this.hover) {
      this.hover = null;
      this.requestDraw();
    }
    this.cb.leave();
  }

  onDown(e) {
    if (e.button !== 0 || !this.colOf) return;
    const [x, y] = this.pointer(e);
    if (x < this.bodyX || x > this.bodyX + this.bodyW || y < TOP || y > TOP + this.bodyH) return;
    e.preventDefault();
    this.hover = null;
    this.drag = { x0: x, x1: x, y0: y };
    this.cb.leave();
    const move = (ev) => {
      const [mx] = this.pointer(ev);
      this.drag.x1 = Math.max(this.bodyX, Math.min(this.bodyX + this.bodyW, mx));
      this.requestDraw();
    };
    const up = (ev) => {
      window.removeEventListener('mousemove', move);
      window.removeEventListener('mouseup', up);
      const drag = this.drag;
      this.drag = null;
      this.requestDraw();
      if (Math.abs(drag.x1 - drag.x0) >= DRAG_THRESHOLD) {
        const a = this.xToStep(Math.min(drag.x0, drag.x1));
        const b = this.xToStep(Math.max(drag.x0, drag.x1));
        this.cb.zoom(a, b);
      } else {
        const hit = this.hitTest(drag.x0, drag.y0);
        if (hit && hit.kind === 'cell') this.cb.click(this, hit.col);
      }
      if (ev.target === this.canvas) this.onMove(ev);
    };
    window.addEventListener('mousemove', move);
    window.addEventListener('mouseup', up);
  }
}
