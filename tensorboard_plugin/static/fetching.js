// Fetching the tab's data: the runs listing, each panel's heatmap, the depth
// profile, the distributions and, for a download, the exact values of the view.

import { getHeatmap, getJSON, heatmapData } from './api.js';

const FULL_REFRESH_MS = 30000; // re-fetch a heatmap at least this often
export const MAX_COLUMNS = 20000; // the server's limit

/**
 * Decodes a ./runs response: {runs: [{run, layers, metrics, lastStep, distributions}],
 * metricInfo, metricNames (the menu's order), defaultMetric}.
 */
export function decodeRuns(json) {
  const runs = Array.isArray(json && json.runs) ? json.runs : [];
  return {
    runs: runs.map((r) => ({
      run: String(r.run),
      layers: Array.isArray(r.layers) ? r.layers.map(String) : [],
      metrics: Array.isArray(r.metrics) ? r.metrics.map(String) : [],
      lastStep: Number(r.last_step) || 0,
      distributions: Array.isArray(r.distributions) ? r.distributions.map(String) : [],
    })),
    metricInfo: (json && json.metric_info) || {},
    metricNames: Array.isArray(json && json.metric_names) ? json.metric_names.map(String) : [],
    defaultMetric: json && json.default_metric ? String(json.default_metric) : null,
  };
}

/** The runs listing, or null when its text is `previousText` (nothing changed): {catalog, text}. */
export async function fetchRuns(previousText) {
  const { json, text } = await getJSON('runs');
  return text === previousText ? null : { catalog: decodeRuns(json), text };
}

/** Whether a fetched heatmap holds the same steps and values as `data`. */
function sameValues(data, answer) {
  const ranges = answer.header.step_ranges || [];
  if (data.totalSteps !== Number(answer.header.total_steps) || data.ranges.length !== ranges.length) return false;
  for (let c = 0; c < ranges.length; c++) {
    if (data.ranges[c][0] !== ranges[c][0] || data.ranges[c][1] !== ranges[c][1]) return false;
  }
  const a = data.values;
  const b = answer.values;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/** One panel's heatmap: what was asked for last, and the data that came back. */
export class HeatmapSource {
  constructor(run) {
    this.run = run;
    this.data = null; // heatmapData() of the last answer that changed something
    this.key = null; // the request last answered
    this.dataKey = null; // the request `data` answers
    this.sig = null; // the run's length and width when last answered
    this.fetchedAt = 0;
    this.seq = 0;
    this.error = null; // why the last fetch failed
  }

  /** Forgets the request: the run does not record the metric. */
  forget() {
    this.seq++;
    this.key = null;
    this.error = null;
  }

  /** Whether `fetch` would ask the server (the request or the run changed, or the answer is old). */
  isStale(key, sig) {
    return key !== this.key || sig !== this.sig || Date.now() - this.fetchedAt >= FULL_REFRESH_MS;
  }

  /**
   * Fetches the heatmap of `params` ({run, metric, max_columns, start_step?, end_step?}).
   * Returns 'data' (this.data is new), 'same' (unchanged: no redraw, no
   * flicker), 'error' (this.error says why) or 'superseded' (a later call answers).
   */
  async fetch(params, key, sig, zoomed) {
    const seq = ++this.seq;
    try {
      const answer = await getHeatmap(params);
      if (seq !== this.seq) return 'superseded';
      Object.assign(this, { key, sig, fetchedAt: Date.now(), error: null });
      if (this.data && this.key === this.dataKey && sameValues(this.data, answer)) return 'same';
      const data = heatmapData(answer);
      data.metric = params.metric;
      data.zoomed = zoomed;
      this.dataKey = key;
      this.data = data;
      return 'data';
    } catch (err) {
      if (seq !== this.seq) return 'superseded';
      Object.assign(this, { key, sig, fetchedAt: Date.now(), error: err.message });
      return 'error';
    }
  }
}

/** The depth profile's series (`metrics`, comma-separated) at one step of a run. */
export async function fetchProfile(run, step, metrics) {
  return (await getJSON('profile', { run, step: String(step), metrics })).json;
}

/** One layer's distribution `name` over the recorded steps (./distribution). */
export async function fetchDistribution(run, name, layer) {
  return (await getJSON('distribution', { run, name, layer })).json;
}

/** Every layer's distribution `name` at `step` (its last when null) (./distribution_step). */
export async function fetchDistributionStep(run, name, step) {
  const params = { run, name };
  if (step !== null && step !== undefined) params.step = String(step);
  return (await getJSON('distribution_step', params)).json;
}

/**
 * The exact values behind a view, for a download: the JSON heatmap of each
 * run over the zoom's steps, a column per recorded step up to MAX_COLUMNS.
 */
export async function fetchExact(runs, metric, range) {
  const params = { metric, max_columns: String(MAX_COLUMNS), ...range };
  return Promise.all(runs.map(async (run) => (await getJSON('heatmap', { run, ...params })).json));
}
