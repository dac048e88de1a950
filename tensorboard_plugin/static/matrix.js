// A labelled matrix of coloured cells on a canvas: rows (bins or units) x
// columns (recorded steps). The distribution and unit views draw with it.

import { CODE_NAN, INF_COLOR } from './colors.js';
import { formatStep } from './format.js';
import { theme } from './theme.js';

const LEFT = 64; // row labels
const TOP = 6; // room for the first row's label
const BOTTOM = 20; // step labels
const FONT = '10px Roboto, "Helvetica Neue", Arial, sans-serif';
const NAN_RGB = [158, 158, 158];

/** [r, g, b] of a CSS colour, through a 1x1 canvas. */
function rgbOf(css) {
  const c = document.createElement('canvas');
  c.width = c.height = 1;
  const ctx = c.getContext('2d');
  ctx.fillStyle = css;
  ctx.fillRect(0, 0, 1, 1);
  return Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3));
}

/** `canvas` sized to width x height CSS px at the screen's pixel ratio; its 2D context, in CSS px. */
export function sizedContext(canvas, width, height) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/**
 * Draws `values` (rows x columns, row-major Float64Array) into `canvas`.
 *
 * @param {HTMLCanvasElement} canvas
 * @param {object} m {values, rows, cols, rowH, rowLabel(r) -> string or '',
 *   steps: the columns' steps, scale (colors.js buildScale), emptyZero:
 *   draw 0 as the empty plot (a count of nothing), marked: rows to flag
 *   with a triangle left of the plot (e.g. dead units)}
 * @returns {function(x, y): {row, col} | null} the cell under a point of the canvas (CSS px)
 *
 * Example: `const hit = drawMatrix(canvas, {values, rows: 26, cols: 12, rowH: 12, ...})`
 */
export function drawMatrix(canvas, m) {
  const width = Math.max(300, canvas.parentElement ? canvas.parentElement.clientWidth : 600);
  const plotW = width - LEFT - 8;
  const height = TOP + m.rows * m.rowH + BOTTOM + 4;
  const ctx = sizedContext(canvas, width, height);
  ctx.fillStyle = theme.card;
  ctx.fillRect(0, 0, width, height);

  // One pixel per cell, scaled up without smoothing.
  const image = new ImageData(Math.max(1, m.cols), Math.max(1, m.rows));
  const empty = rgbOf(theme.plot);
  for (let r = 0; r < m.rows; r++) {
    for (let c = 0; c < m.cols; c++) {
      const v = m.values[r * m.cols + c];
      const code = m.scale.code(v);
      let rgb;
      if (m.emptyZero && v === 0) rgb = empty;
      else if (code === CODE_NAN) rgb = NAN_RGB;
      else if (code < 0) rgb = INF_COLOR;
      else rgb = [m.scale.lut[code * 3], m.scale.lut[code * 3 + 1], m.scale.lut[code * 3 + 2]];
      const i = (r * m.cols + c) * 4;
      image.data.set(rgb, i);
      image.data[i + 3] = 255;
    }
  }
  const cells = document.createElement('canvas');
  cells.width = image.width;
  cells.height = image.height;
  cells.getContext('2d').putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, LEFT, TOP, plotW, m.rows * m.rowH);
  ctx.strokeStyle = theme.line;
  ctx.strokeRect(LEFT - 0.5, TOP - 0.5, plotW + 1, m.rows * m.rowH + 1);

  ctx.font = FONT;
  ctx.fillStyle = theme.text;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (let r = 0; r < m.rows; r++) {
    const label = m.rowLabel(r);
    if (label) ctx.fillText(label, LEFT - 10, TOP + (r + 0.5) * m.rowH);
  }
  ctx.fillStyle = theme.strong;
  for (const r of m.marked || []) {
    const y = TOP + (r + 0.5) * m.rowH;
    ctx.beginPath();
    ctx.moveTo(LEFT - 8, y - 3);
    ctx.lineTo(LEFT - 2, y);
    ctx.lineTo(LEFT - 8, y + 3);
    ctx.fill();
  }
  ctx.fillStyle = theme.muted;
  ctx.textBaseline = 'top';
  ctx.textAlign = 'center';
  const every = Math.max(1, Math.ceil(m.cols / Math.max(1, Math.floor(plotW / 70))));
  for (let c = 0; c < m.cols; c += every) {
    ctx.fillText(formatStep(m.steps[c]), LEFT + ((c + 0.5) * plotW) / m.cols, TOP + m.rows * m.rowH + 5);
  }

  return (x, y) => {
    const col = Math.floor(((x - LEFT) / plotW) * m.cols);
    const row = Math.floor((y - TOP) / m.rowH);
    return col >= 0 && col < m.cols && row >= 0 && row < m.rows ? { row, col } : null;
  };
}
