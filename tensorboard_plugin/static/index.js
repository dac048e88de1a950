// GradWatch TensorBoard plugin frontend (entry point).
//
// TensorBoard loads this ES module into the plugin iframe (whose <base href>
// is the plugin route folder) and calls render(). This file owns the app
// state (runs, metric, filter, zoom, open profile), the polling loop and the
// wiring between the toolbar, the heatmap panels, the legend and the profile.

import { getHeatmap, getJSON, heatmapData } from './api.js';
import { buildScale } from './colors.js';
import { Controls } from './controls.js';
import { FindingsPanel } from './findings.js';
import { formatStep, formatValue } from './format.js';
import { dataExtent, filterRows, HeatmapView } from './heatmap.js';
import { Legend } from './legend.js';
import { onViewStateChange, readViewState, writeViewState } from './location.js';
import { PROFILE_SERIES, ProfileView } from './profile.js';
import { Tooltip } from './tooltip.js';

const POLL_MS = 5000;
const FULL_REFRESH_MS = 30000; // re-fetch a heatmap at least this often
const MAX_COLUMNS = 20000; // the server's limit
const MIN_ROW_PX = 6; // 500 layers -> 3000 px of rows, scrolled inside the panel
const MAX_ROW_PX = 22;

function loadStylesheet() {
  if (document.querySelector('link[data-gw-style]')) return Promise.resolve();
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = new URL('./gradwatch.css', import.meta.url).href;
  link.setAttribute('data-gw-style', '');
  return new Promise((resolve) => {
    link.addEventListener('load', resolve);
    link.addEventListener('error', resolve);
    (document.head || document.documentElement).appendChild(link);
  });
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

/** The steps a panel's run covers, [first, last + 1), whether its data is zoomed or not. */
function fullExtent(data) {
  if (!data || !data.totalSteps) return null;
  return data.zoomed ? [data.firstStep, data.lastStep + 1] : dataExtent(data);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

class App {
  constructor(root) {
    this.runs = [];
    this.metricInfo = {};
    this.metricNames = []; // the server's list (metadata.METRIC_NAMES), in menu order
    this.defaultMetric = null;
    this.runsText = null;
    this.runsError = null;
    this.run = null;
    this.run2 = '';
    this.metric = null;
    this.filter = '';
    this.zoom = null;
    this.panels = [];
    this.scale = null;
    this.profileSel = null;
    this.profileSeq = 0;
    this.profileError = null;
    this.pollBusy = false;
    this.lastUpdate = null;

    // The view a link or a reload asks for, applied as its runs and data arrive.
    this.pending = readViewState();
    this.filter = this.pending.filter || '';
    this.zoom = this.pending.zoom;

    this.root = el('div', 'gw-app');
    root.appendChild(this.root);
    this.controls = new Controls(this.root, {
      run: (name) => this.selectRuns(name, this.run2),
      run2: (name) => this.selectRuns(this.run, name),
      metric: (name) => this.selectMetric(name),
      filter: (text) => this.setFilter(text),
      resetZoom: () => this.setZoom(null),
    });
    this.controls.filter.value = this.filter;
    this.status = el('div', 'gw-status', 'Loading\u2026');
    this.status.id = 'gw-status';
    this.status.setAttribute('role', 'status');
    this.root.appendChild(this.status);

    this.empty = el('div', 'gw-card gw-empty');
    this.empty.hidden = true;
    const emptyTitle = el('div', 'gw-empty-title', 'No GradWatch data yet.');
    const emptyText = el('p', '', 'Train with gradwatch.GradWatch(log_dir) as a Keras callback, e.g. ');
    emptyText.appendChild(el('code', '', 'model.fit(x, y, callbacks=[gradwatch.GradWatch(log_dir)])'));
    emptyText.appendChild(document.createTextNode(', and point TensorBoard at the same log_dir. This page refreshes automatically.'));
    this.empty.append(emptyTitle, emptyText);
    this.root.appendChild(this.empty);

    this.main = el('div', 'gw-main');
    this.main.hidden = true;
    const card = el('section', 'gw-card gw-heatmap-card');
    const head = el('div', 'gw-card-head');
    this.legend = new Legend(head);
    const about = el('div', 'gw-about');
    this.description = el('div', 'gw-description');
    const hint = el('div', 'gw-hint', 'Drag across a heatmap to zoom the step axis \u00b7 click a column for the depth profile');
    about.append(this.description, hint);
    head.appendChild(about);
    this.panelHost = el('div', 'gw-panels');
    card.append(head, this.panelHost);
    this.findingsPanel = new FindingsPanel(this.main, {
      select: (run, finding) => this.focusFinding(run, finding),
    });
    this.main.appendChild(card);
    this.tooltip = new Tooltip(this.root);
    this.profile = new ProfileView(this.main, this.tooltip);
    this.profile.onClose = () => {
      this.profileSel = null;
      this.profileError = null;
      this.layoutPanels();
      this.updateStatus();
      this.saveState();
    };
    this.root.appendChild(this.main);

    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        this.layoutPanels();
        this.refreshPanels();
      }, 200);
    });
    // A link pasted into an open tab: start over from it.
    onViewStateChange(() => window.location.reload());
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.poll();
    });
    window.addEventListener('scroll', () => this.tooltip.hide(), { passive: true });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.profile.isOpen) this.profile.close();
    });
  }

  async start() {
    await this.poll();
    setInterval(() => {
      if (!document.hidden) this.poll();
    }, POLL_MS);
  }

  runInfo(name) {
    return this.runs.find((r) => r.run === name) || null;
  }

  metricLabel(name) {
    const info = this.metricInfo[name];
    return info && info.label ? String(info.label) : name;
  }

  // ---- polling -----------------------------------------------------------

  async poll() {
    if (this.pollBusy) return;
    this.pollBusy = true;
    try {
      const { json, text } = await getJSON('runs');
      this.runsError = null;
      if (text !== this.runsText) {
        this.runsText = text;
        this.applyRuns(json);
      }
      await this.refreshPanels();
      await this.refreshFindings();
      this.lastUpdate = new Date();
      this.openPendingProfile();
      this.saveState();
    } catch (err) {
      this.runsError = `Could not load runs: ${err.message}`;
    } finally {
      this.pollBusy = false;
      this.updateStatus();
    }
  }

  /** The selected step of a link, once its run's heatmap has arrived. */
  openPendingProfile() {
    const { step } = this.pending;
    if (step === null || step === undefined) return;
    const run = this.pending.step_run || this.run;
    const panel = this.panels.find((p) => p.run === run);
    if (!panel || !panel.data) return;
    delete this.pending.step;
    this.openProfile(run, step);
  }

  /** Puts the view's state in the URL (see location.js). */
  saveState() {
    writeViewState({
      run: this.run,
      compare: this.run2,
      metric: this.metric,
      filter: this.filter,
      zoom: this.zoom,
      step_run: this.profileSel ? this.profileSel.run : null,
      step: this.profileSel ? this.profileSel.step : null,
    });
  }

  applyRuns(json) {
    const runs = Array.isArray(json && json.runs) ? json.runs : [];
    this.runs = runs.map((r) => ({
      run: String(r.run),
      layers: Array.isArray(r.layers) ? r.layers.map(String) : [],
      metrics: Array.isArray(r.metrics) ? r.metrics.map(String) : [],
      lastStep: Number(r.last_step) || 0,
    }));
    this.metricInfo = (json && json.metric_info) || {};
    this.metricNames = Array.isArray(json && json.metric_names) ? json.metric_names.map(String) : [];
    this.defaultMetric = json && json.default_metric ? String(json.default_metric) : null;
    const names = this.runs.map((r) => r.run);
    const hasRuns = names.length > 0;
    this.empty.hidden = hasRuns;
    this.main.hidden = !hasRuns;
    this.controls.setEnabled(hasRuns);
    if (hasRuns && this.pending.run !== undefined) {
      if (names.includes(this.pending.run)) this.run = this.pending.run;
      if (names.includes(this.pending.compare)) this.run2 = this.pending.compare;
      delete this.pending.run;
    }
    if (!names.includes(this.run)) this.run = hasRuns ? names[0] : null;
    if (this.run2 && !names.includes(this.run2)) this.run2 = '';
    this.controls.setRuns(names, this.run || '', this.run2);
    this.syncMetrics();
    this.syncPanels();
  }

  /** Metric choices: union over the selected runs, in the server's order. */
  syncMetrics() {
    const present = new Set();
    for (const name of this.selectedRuns()) {
      const info = this.runInfo(name);
      if (info) info.metrics.forEach((m) => present.add(m));
    }
    const rank = (m) => {
      const i = this.metricNames.indexOf(m);
      return i < 0 ? this.metricNames.length : i;
    };
    const names = [...present].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    if (names.length && this.pending.metric !== undefined) {
      if (names.includes(this.pending.metric)) this.metric = this.pending.metric;
      delete this.pending.metric;
    }
    if (!names.includes(this.metric)) {
      this.metric = names.includes(this.defaultMetric) ? this.defaultMetric : (names[0] || null);
    }
    this.controls.setMetrics(names.map((name) => {
      const info = this.metricInfo[name] || {};
      return { name, label: this.metricLabel(name), description: info.description ? String(info.description) : '' };
    }), this.metric || '');
    const info = this.metricInfo[this.metric] || {};
    this.description.textContent = info.description ? String(info.description) : '';
  }

  selectedRuns() {
    const names = [];
    if (this.run) names.push(this.run);
    if (this.run2 && this.run2 !== this.run) names.push(this.run2);
    return names;
  }

  /** Creates / removes heatmap panels so they match the selected runs. */
  syncPanels() {
    const wanted = this.selectedRuns();
    const kept = [];
    for (const p of this.panels) {
      if (wanted.includes(p.run)) kept.push(p);
      else p.view.destroy();
    }
    this.panels = wanted.map((run) => kept.find((p) => p.run === run) || this.createPanel(run));
    for (const p of this.panels) this.panelHost.appendChild(p.view.el);
  }

  createPanel(run) {
    const view = new HeatmapView(this.panelHost, run, {
      hover: (v, hit, e) => this.showHover(v, hit, e),
      leave: () => this.tooltip.hide(),
      click: (v, col) => this.openProfileAt(v, col),
      zoom: (lo, hi) => this.setZoom([lo, hi]),
      scroll: (v, top) => {
        for (const p of this.panels) {
          if (p.view !== v && Math.abs(p.view.scroller.scrollTop - top) > 0.5) p.view.scroller.scrollTop = top;
        }
      },
    });
    return { run, view, data: null, dataKey: null, key: null, sig: null, fetchedAt: 0, seq: 0, error: null };
  }

  // ---- heatmap data --------------------------------------------------------

  /**
   * Columns to ask for: one per device pixel of the panel's width (rounded
   * up to 50, so a small resize reuses the data), zoomed or not: a zoom asks
   * for its own step range, so it gets real detail at screen resolution.
   * The panel's width, not the heatmap's: known before the first data.
   */
  columnsFor(p) {
    const width = p.view.el.clientWidth || this.panelHost.clientWidth || 800;
    const px = width * (window.devicePixelRatio || 1);
    return Math.min(MAX_COLUMNS, Math.max(100, Math.ceil(px / 50) * 50));
  }

  /** The zoom as the recorded steps it shows: {start_step, end_step}, or {}. */
  zoomParams() {
    if (!this.zoom) return {};
    // A column spans from its step to the next one, so the steps that start
    // inside [zoom[0], zoom[1]) are the ones shown.
    const start = Math.max(0, Math.floor(this.zoom[0]));
    const end = Math.max(start, Math.ceil(this.zoom[1]) - 1);
    return { start_step: String(start), end_step: String(end) };
  }

  /** Fetches heatmaps whose request or run changed (or that are older than FULL_REFRESH_MS). */
  async refreshPanels() {
    await Promise.all(this.panels.map((p) => this.refreshPanel(p)));
    this.updateStatus();
  }

  async refreshPanel(p) {
    const info = this.runInfo(p.run);
    if (!info) return;
    const metric = this.metric;
    if (!metric || !info.metrics.includes(metric)) {
      p.seq++;
      p.key = null;
      p.error = null;
      p.view.setLoading(false);
      this.setPanelData(p, null);
      p.view.showMessage(metric
        ? `\u201c${this.metricLabel(metric)}\u201d is not recorded for this run.`
        : 'No metrics recorded for this run yet.');
      return;
    }
    const columns = this.columnsFor(p);
    const range = this.zoomParams();
    const key = `${metric}|${columns}|${range.start_step}|${range.end_step}`;
    const sig = [info.lastStep, info.layers.length].join('|');
    const fresh = Date.now() - p.fetchedAt < FULL_REFRESH_MS;
    if (key === p.key && sig === p.sig && fresh) return;
    const seq = ++p.seq;
    if (!p.data || p.data.metric !== metric) p.view.setLoading(true);
    try {
      const answer = await getHeatmap({ run: p.run, metric, max_columns: String(columns), ...range });
      if (seq !== p.seq) return;
      Object.assign(p, { key, sig, fetchedAt: Date.now(), error: null });
      p.view.setLoading(false);
      p.view.showMessage('');
      if (p.data && p.key === p.dataKey && sameValues(p.data, answer)) return; // unchanged: no redraw, no flicker
      const data = heatmapData(answer);
      data.metric = metric;
      data.zoomed = Boolean(range.start_step);
      p.dataKey = key;
      this.setPanelData(p, data);
    } catch (err) {
      if (seq !== p.seq) return;
      p.view.setLoading(false);
      Object.assign(p, { key, sig, fetchedAt: Date.now(), error: `Heatmap for ${p.run}: ${err.message}` });
      if (p.data && p.data.metric !== metric) this.setPanelData(p, null);
      p.view.showMessage(`Could not load heatmap: ${err.message}`, true);
    }
  }

  setPanelData(p, data) {
    if (p.data === data) return;
    p.data = data;
    this.rebuildScale();
  }

  /** One colour scale shared by every panel showing the selected metric. */
  rebuildScale() {
    const live = this.panels.filter((p) => p.data && p.data.metric === this.metric);
    const info = this.metricInfo[this.metric] || {};
    this.scale = live.length ? buildScale(String(info.scale || ''), live.map((p) => p.data.values)) : null;
    this.legend.update(this.scale, this.metricLabel(this.metric));
    this.layoutPanels();
  }

  /** Pushes data, scale, filter, zoom and row height to every panel. */
  layoutPanels() {
    // Panels share the step axis (same step, same x) and the colour scale;
    // each picks a row height that fits its own (filtered) layer count.
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of this.panels) {
      const ext = fullExtent(p.data);
      if (ext) {
        lo = Math.min(lo, ext[0]);
        hi = Math.max(hi, ext[1]);
      }
    }
    const full = lo < hi ? [lo, hi] : [0, 1];
    if (this.zoom && lo < hi && (this.zoom[1] <= full[0] || this.zoom[0] >= full[1])) this.zoom = null;
    this.controls.setZoomed(Boolean(this.zoom));
    const domain = this.zoom || full;
    const maxBodyH = Math.max(240, Math.min(620, window.innerHeight - 300));
    for (const p of this.panels) {
      const rows = p.data ? filterRows(p.data.layers, this.filter).length : 0;
      const rowH = rows ? Math.max(MIN_ROW_PX, Math.min(MAX_ROW_PX, Math.floor(maxBodyH / rows))) : MAX_ROW_PX;
      const props = { data: p.data, filter: this.filter, domain, rowH, maxBodyH };
      if (p.data && p.data.metric === this.metric && this.scale) props.scale = this.scale;
      props.marker = this.profileSel && this.profileSel.run === p.run ? this.profileSel.step : null;
      props.regions = this.findingsPanel.regionsOf(p.run);
      p.view.set(props);
    }
  }

  // ---- user actions --------------------------------------------------------

  selectRuns(run, run2) {
    this.run = run;
    this.run2 = run2;
    this.syncMetrics();
    this.syncPanels();
    this.rebuildScale();
    this.refreshPanels();
    this.refreshFindings();
    this.saveState();
  }

  // ---- findings --------------------------------------------------------------

  async refreshFindings() {
    if (await this.findingsPanel.refresh(this.selectedRuns())) this.layoutPanels();
  }

  /** Shows a finding: selects its metric, zooms to its steps, scrolls to its first layer. */
  focusFinding(run, finding) {
    const info = this.runInfo(run);
    if (info && finding.metric && info.metrics.includes(finding.metric) && finding.metric !== this.metric) {
      this.selectMetric(finding.metric);
    }
    const panel = this.panels.find((p) => p.run === run);
    const extent = panel ? fullExtent(panel.data) : null;
    const first = extent ? extent[0] : 0;
    const last = info ? Math.max(info.lastStep, finding.last) : finding.last;
    if (finding.first <= first && finding.last >= last) {
      this.setZoom(null);
    } else {
      const pad = Math.max(1, 0.15 * (finding.last - finding.first), 0.04 * Math.max(1, last - first));
      this.setZoom([Math.max(first, finding.first - pad), Math.min(last + 1, finding.last + pad)]);
    }
    if (panel && finding.layers.length) {
      if (!panel.view.scrollToLayer(finding.layers[0]) && this.filter) {
        this.controls.filter.value = '';
        this.setFilter('');
        panel.view.scrollToLayer(finding.layers[0]);
      }
      panel.view.el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    }
  }

  selectMetric(name) {
    // The current heatmaps and legend stay until the new data arrives (no blank flash).
    this.metric = name;
    this.syncMetrics();
    this.refreshPanels();
    this.saveState();
  }

  setFilter(text) {
    this.filter = text;
    this.tooltip.hide();
    this.layoutPanels();
    this.saveState();
  }

  setZoom(range) {
    if (range) {
      let [a, b] = range;
      if (b - a < 2) {
        const mid = (a + b) / 2;
        a = mid - 1;
        b = mid + 1;
      }
      // Whole steps: what the URL keeps, and a recorded step is in or out.
      this.zoom = [Math.floor(a), Math.ceil(b)];
    } else {
      this.zoom = null;
    }
    this.tooltip.hide();
    this.layoutPanels();
    this.refreshPanels();
    this.saveState();
  }

  showHover(view, hit, e) {
    const n = hit.kind && view.data ? view.data.layers.length : 0;
    const rows = [['run', view.run], ['layer', `${hit.layer + 1} of ${n}`]];
    if (hit.kind === 'cell') {
      const [a, b] = hit.range;
      let label = this.metricLabel(view.data.metric);
      if (a === b) {
        rows.push(['step', formatStep(hit.step)]);
      } else {
        // Merged column: the backend keeps the worst (max) value for fraction /
        // count metrics and the value at the column's last step otherwise.
        const kind = (this.metricInfo[view.data.metric] || {}).scale;
        rows.push(['steps', `${formatStep(a)}\u2013${formatStep(b)}`]);
        label += kind === 'fraction' || kind === 'count' ? ' (max)' : ` (at step ${formatStep(hit.step)})`;
      }
      rows.push([label, formatValue(hit.value)]);
    }
    this.tooltip.show(e.clientX, e.clientY, hit.name, rows);
  }

  openProfileAt(view, col) {
    if (!view.data) return;
    this.openProfile(view.run, view.data.steps[col]);
  }

  async openProfile(run, step) {
    const seq = ++this.profileSeq;
    this.profileSel = { run, step };
    this.profileError = null;
    this.saveState();
    this.profile.open(run, step, this.metricInfo);
    this.layoutPanels();
    try {
      const metrics = PROFILE_SERIES.map((s) => s.key).join(',');
      const { json } = await getJSON('profile', { run, step: String(step), metrics });
      if (seq !== this.profileSeq) return;
      this.profile.setData(json);
      this.profile.el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    } catch (err) {
      if (seq !== this.profileSeq) return;
      this.profileError = `Could not load depth profile: ${err.message}`;
      this.profile.setError(this.profileError);
    }
    this.updateStatus();
  }

  updateStatus() {
    const errors = [this.runsError, ...this.panels.map((p) => p.error), this.profileError].filter(Boolean);
    this.status.classList.toggle('gw-error', errors.length > 0);
    if (errors.length) {
      this.status.textContent = errors.join(' \u00b7 ');
      return;
    }
    if (!this.lastUpdate) {
      this.status.textContent = 'Loading\u2026';
      return;
    }
    const parts = [];
    if (this.runs.length === 0) parts.push('Waiting for data');
    if (this.zoom) parts.push(`Zoomed to steps ${formatStep(this.zoom[0])}\u2013${formatStep(this.zoom[1])}`);
    parts.push(`Updated ${this.lastUpdate.toLocaleTimeString()} \u00b7 refreshes every ${POLL_MS / 1000} s`);
    this.status.textContent = parts.join(' \u00b7 ');
  }
}

/** Entry point called by TensorBoard. */
export async function render() {
  await loadStylesheet();
  const app = new App(document.body);
  await app.start();
}
