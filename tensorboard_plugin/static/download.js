// "Download CSV" / "Download JSON": the data of the current view as a file.
//
// The rows are the server's JSON heatmap (exact float32 values, a column per
// recorded step up to its limit) of every run shown, over the zoomed steps,
// for the layers the filter keeps. The CSV is long, one row per layer and
// column, with the columns of gradwatch.load(...).to_frame() plus first_step:
//   run,metric,layer,step,first_step,value
// where a column merges several recorded steps, first_step..step are the
// steps it covers. Non-finite values are written NaN, Infinity, -Infinity.

import { filterRows } from './heatmap.js';

export const CSV_COLUMNS = ['run', 'metric', 'layer', 'step', 'first_step', 'value'];

/** One CSV field, quoted when it must be (RFC 4180). */
function csvField(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/**
 * The view's tables: per run, its layers kept by `filter` and the values
 * of those layers per column. `answers` are ./heatmap JSON responses.
 */
export function viewTables(answers, filter) {
  return answers.map((a) => {
    const layers = Array.isArray(a.layers) ? a.layers.map(String) : [];
    const rows = filterRows(layers, filter);
    const columns = Array.isArray(a.steps) ? a.steps.length : 0;
    return {
      run: String(a.run),
      metric: String(a.metric),
      layers: rows.map((i) => layers[i]),
      steps: (a.steps || []).map(Number),
      step_ranges: (a.step_ranges || []).slice(0, columns),
      // values[column][layer], in the server's JSON spelling (NaN as "NaN").
      values: (a.values || []).map((column) => rows.map((i) => column[i])),
    };
  });
}

/** The tables as CSV text, one row per run, layer and column (layers in depth order). */
export function toCSV(tables) {
  const lines = [CSV_COLUMNS.join(',')];
  for (const t of tables) {
    t.layers.forEach((layer, l) => {
      t.steps.forEach((step, c) => {
        const first = t.step_ranges[c] ? t.step_ranges[c][0] : step;
        lines.push([t.run, t.metric, layer, step, first, t.values[c][l]].map(csvField).join(','));
      });
    });
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** The tables as JSON text: {metric, filter, zoom, runs: [...tables]}. */
export function toJSON(tables, view) {
  return `${JSON.stringify({ metric: view.metric, filter: view.filter, zoom: view.zoom, runs: tables }, null, 1)}\n`;
}

/** A file name made of the metric and runs, safe on every file system. */
export function fileName(metric, runs, extension) {
  const stem = ['gradwatch', metric, ...runs].join('_').replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 120);
  return `${stem}.${extension}`;
}

/** Saves `text` as a download named `name`. */
export function saveText(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
