// GradWatch TensorBoard plugin frontend (entry point).
//
// TensorBoard loads this ES module into the plugin iframe (whose <base href>
// is the plugin route folder) and calls render(). The App here is the
// controller: user actions change the view's state (view_state.js), which
// decides what to fetch (fetching.js) and what the page shows (page.js).

import { buildScale } from './colors.js';
import { attachCursor } from './cursor.js';
import { DistributionCard } from './distribution.js';
import { fileName, saveText, toCSV, toJSON, viewTables } from './download.js';
import { fetchExact, fetchProfile, fetchRuns, HeatmapSource, MAX_COLUMNS } from './fetching.js';
import { formatStep } from './format.js';
import { dataExtent, HeatmapView } from './heatmap.js';
import { Page } from './page.js';
import { PROFILE_SERIES } from './profile.js';
import { onThemeChange, readTheme } from './theme.js';
import { onViewStateChange, ViewState } from './view_state.js';

const POLL_MS = 5000;

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

/** The steps a panel's run covers, [first, last + 1), whether its data is zoomed or not. */
function fullExtent(data) {
  if (!data || !data.totalSteps) return null;
  return data.zoomed ? [data.firstStep, data.lastStep + 1] : dataExtent(data);
}

class App {
  constructor(root) {
    this.state = new ViewState();
    this.catalog = { runs: [], metricInfo: {}, metricNames: [], defaultMetric: null };
    this.runsText = null;
    this.runsError = null;
    this.profileSeq = 0;
    this.profileError = null;
    this.downloadError = null;
    this.panels = []; // {run, view: HeatmapView, source: HeatmapSource}
    this.scale = null;
    this.pollBusy = false;
    this.lastUpdate = null;

    this.page = new Page(root, {
      run: (name) => this.selectRuns(name, this.state.compare),
      compare: (name) => this.selectRuns(this.state.run, name),
      metric: (name) => this.selectMetric(name),
      filter: (text) => this.setFilter(text),
      resetZoom: () => this.setZoom(null),
      download: (format) => this.download(format),
      finding: (run, finding) => this.focusFinding(run, finding),
      closeProfile: () => {
        this.state.profile = null;
        this.profileError = null;
        this.layoutPanels();
        this.updateStatus();
        this.state.save();
      },
    });
    this.page.controls.filter.value = this.state.filter;
    this.distributions = new DistributionCard(this.page.distributionHost, this.state, {
      changed: () => this.state.save(),
      tooltip: this.page.tooltip,
    });

    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        this.layoutPanels();
        this.refreshPanels();
        this.distributions.redraw();
      }, 200);
    });
    onThemeChange(() => {
      for (const p of this.panels) p.view.requestDraw();
      this.page.legend.update(this.scale, this.metricLabel(this.state.metric));
      this.page.profile.draw();
      this.distributions.redraw();
    });
    // A link pasted into an open tab: start over from it.
    onViewStateChange(() => window.location.reload());
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.poll();
    });
    window.addEventListener('scroll', () => this.page.tooltip.hide(), { passive: true });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && this.page.profile.isOpen) this.page.profile.close();
    });
  }

  async start() {
    await this.poll();
    setInterval(() => {
      if (!document.hidden) this.poll();
    }, POLL_MS);
  }

  runInfo(name) {
    return this.catalog.runs.find((r) => r.run === name) || null;
  }

  metricLabel(name) {
    const info = this.catalog.metricInfo[name];
    return info && info.label ? String(info.label) : name;
  }

  // ---- polling -----------------------------------------------------------

  async poll() {
    if (this.pollBusy) return;
    this.pollBusy = true;
    try {
      const answer = await fetchRuns(this.runsText);
      this.runsError = null;
      if (answer) {
        this.runsText = answer.text;
        this.applyRuns(answer.catalog);
      }
      await this.refreshPanels();
      await this.refreshFindings();
      this.lastUpdate = new Date();
      this.openPendingProfile();
      this.state.save();
    } catch (err) {
      this.runsError = `Could not load runs: ${err.message}`;
    } finally {
      this.pollBusy = false;
      this.updateStatus();
    }
  }

  /** The selected step of a link, once its run's heatmap has arrived. */
  openPendingProfile() {
    const { pending } = this.state;
    if (pending.step === null || pending.step === undefined) return;
    const run = pending.step_run || this.state.run;
    const panel = this.panels.find((p) => p.run === run);
    if (!panel || !panel.source.data) return;
    const { step } = pending;
    delete pending.step;
    this.openProfile(run, step);
  }

  applyRuns(catalog) {
    this.catalog = catalog;
    const { state } = this;
    const names = catalog.runs.map((r) => r.run);
    const hasRuns = names.length > 0;
    this.page.showRuns(hasRuns);
    if (hasRuns && state.pending.run !== undefined) {
      if (names.includes(state.pending.run)) state.run = state.pending.run;
      if (names.includes(state.pending.compare)) state.compare = state.pending.compare;
      delete state.pending.run;
    }
    if (!names.includes(state.run)) state.run = hasRuns ? names[0] : null;
    if (state.compare && !names.includes(state.compare)) state.compare = '';
    this.page.controls.setRuns(names, state.run || '', state.compare);
    this.syncMetrics();
    this.syncPanels();
    this.distributions.setRun(this.runInfo(state.run));
  }

  /** Metric choices: union over the selected runs, in the server's order. */
  syncMetrics() {
    const { state } = this;
    const { metricNames, metricInfo, defaultMetric } = this.catalog;
    const present = new Set();
    for (const name of state.selectedRuns()) {
      const info = this.runInfo(name);
      if (info) info.metrics.forEach((m) => present.add(m));
    }
    const rank = (m) => {
      const i = metricNames.indexOf(m);
      return i < 0 ? metricNames.length : i;
    };
    const names = [...present].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    if (names.length && state.pending.metric !== undefined) {
      if (names.includes(state.pending.metric)) state.metric = state.pending.metric;
      delete state.pending.metric;
    }
    if (!names.includes(state.metric)) {
      state.metric = names.includes(defaultMetric) ? defaultMetric : (names[0] || null);
    }
    this.page.controls.setMetrics(names.map((name) => {
      const info = metricInfo[name] || {};
      return { name, label: this.metricLabel(name), description: info.description ? String(info.description) : '' };
    }), state.metric || '');
    const info = metricInfo[state.metric] || {};
    this.page.description.textContent = info.description ? String(info.description) : '';
  }

  /** Creates / removes heatmap panels so they match the selected runs. */
  syncPanels() {
    const wanted = this.state.selectedRuns();
    const kept = [];
    for (const p of this.panels) {
      if (wanted.includes(p.run)) kept.push(p);
      else p.view.destroy();
    }
    this.panels = wanted.map((run) => kept.find((p) => p.run === run) || this.createPanel(run));
    for (const p of this.panels) this.page.panelHost.appendChild(p.view.el);
  }

  createPanel(run) {
    const view = new HeatmapView(this.page.panelHost, run, {
      hover: (v, hit, e) => this.showHit(v, hit, e.clientX, e.clientY),
      leave: () => this.page.tooltip.hide(),
      click: (v, col) => this.openProfileAt(v, col),
      zoom: (lo, hi) => this.setZoom([lo, hi]),
      scroll: (v, top) => {
        for (const p of this.panels) {
          if (p.view !== v && Math.abs(p.view.scroller.scrollTop - top) > 0.5) p.view.scroller.scrollTop = top;
        }
      },
    });
    attachCursor(view, {
      show: (v, hit, x, y) => this.page.announce(hit.name, this.showHit(v, hit, x, y)),
      hide: () => this.page.tooltip.hide(),
      open: (v, col) => this.openProfileAt(v, col),
    });
    return { run, view, source: new HeatmapSource(run) };
  }

  showHit(view, hit, x, y) {
    const kind = (this.catalog.metricInfo[view.data ? view.data.metric : ''] || {}).scale;
    return this.page.showHit(view, hit, x, y, (m) => this.metricLabel(m), kind);
  }

  // ---- heatmap data --------------------------------------------------------

  /**
   * Columns to ask for: one per device pixel of the panel's width (rounded
   * up to 50, so a small resize reuses the data), zoomed or not: a zoom asks
   * for its own step range, so it gets real detail at screen resolution.
   * The panel's width, not the heatmap's: known before the first data.
   */
  columnsFor(p) {
    const width = p.view.el.clientWidth || this.page.panelHost.clientWidth || 800;
    const px = width * (window.devicePixelRatio || 1);
    return Math.min(MAX_COLUMNS, Math.max(100, Math.ceil(px / 50) * 50));
  }

  /** Fetches heatmaps whose request or run changed (or that are older than a refresh period). */
  async refreshPanels() {
    await Promise.all(this.panels.map((p) => this.refreshPanel(p)));
    this.updateStatus();
  }

  async refreshPanel(p) {
    const info = this.runInfo(p.run);
    if (!info) return;
    const { metric } = this.state;
    const { source, view } = p;
    if (!metric || !info.metrics.includes(metric)) {
      source.forget();
      view.setLoading(false);
      this.setPanelData(p, null);
      view.showMessage(metric
        ? `\u201c${this.metricLabel(metric)}\u201d is not recorded for this run.`
        : 'No metrics recorded for this run yet.');
      return;
    }
    const columns = this.columnsFor(p);
    const range = this.state.zoomParams();
    const key = `${metric}|${columns}|${range.start_step}|${range.end_step}`;
    const sig = [info.lastStep, info.layers.length].join('|');
    if (!source.isStale(key, sig)) return;
    if (!source.data || source.data.metric !== metric) view.setLoading(true);
    const outcome = await source.fetch(
      { run: p.run, metric, max_columns: String(columns), ...range }, key, sig, Boolean(range.start_step));
    if (outcome === 'superseded') return;
    view.setLoading(false);
    if (outcome === 'error') {
      if (source.data && source.data.metric !== metric) this.setPanelData(p, null);
      view.showMessage(`Could not load heatmap: ${source.error}`, true);
      return;
    }
    view.showMessage('');
    if (outcome === 'data') this.rebuildScale();
  }

  setPanelData(p, data) {
    if (p.source.data === data) return;
    p.source.data = data;
    this.rebuildScale();
  }

  /** One colour scale shared by every panel showing the selected metric. */
  rebuildScale() {
    const { metric } = this.state;
    const live = this.panels.filter((p) => p.source.data && p.source.data.metric === metric);
    const info = this.catalog.metricInfo[metric] || {};
    this.scale = live.length ? buildScale(String(info.scale || ''), live.map((p) => p.source.data.values)) : null;
    this.page.legend.update(this.scale, this.metricLabel(metric));
    this.layoutPanels();
  }

  /** Panels share the step axis (same step, same x) and the colour scale. */
  layoutPanels() {
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of this.panels) {
      const ext = fullExtent(p.source.data);
      if (ext) {
        lo = Math.min(lo, ext[0]);
        hi = Math.max(hi, ext[1]);
      }
    }
    const full = lo < hi ? [lo, hi] : [0, 1];
    const { state } = this;
    if (state.zoom && lo < hi && (state.zoom[1] <= full[0] || state.zoom[0] >= full[1])) state.zoom = null;
    this.page.controls.setZoomed(Boolean(state.zoom));
    this.page.layoutPanels(this.panels, state, this.scale, state.zoom || full);
  }

  // ---- user actions --------------------------------------------------------

  selectRuns(run, compare) {
    this.state.run = run;
    this.state.compare = compare;
    this.syncMetrics();
    this.syncPanels();
    this.rebuildScale();
    this.refreshPanels();
    this.refreshFindings();
    this.distributions.setRun(this.runInfo(run));
    this.state.save();
  }

  async refreshFindings() {
    if (await this.page.findings.refresh(this.state.selectedRuns())) this.layoutPanels();
  }

  /** Shows a finding: selects its metric, zooms to its steps, scrolls to its first layer. */
  focusFinding(run, finding) {
    const info = this.runInfo(run);
    if (info && finding.metric && info.metrics.includes(finding.metric) && finding.metric !== this.state.metric) {
      this.selectMetric(finding.metric);
    }
    const panel = this.panels.find((p) => p.run === run);
    const extent = panel ? fullExtent(panel.source.data) : null;
    const first = extent ? extent[0] : 0;
    const last = info ? Math.max(info.lastStep, finding.last) : finding.last;
    if (finding.first <= first && finding.last >= last) {
      this.setZoom(null);
    } else {
      const pad = Math.max(1, 0.15 * (finding.last - finding.first), 0.04 * Math.max(1, last - first));
      this.setZoom([Math.max(first, finding.first - pad), Math.min(last + 1, finding.last + pad)]);
    }
    if (panel && finding.layers.length) {
      if (!panel.view.scrollToLayer(finding.layers[0]) && this.state.filter) {
        this.page.controls.filter.value = '';
        this.setFilter('');
        panel.view.scrollToLayer(finding.layers[0]);
      }
      panel.view.el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    }
  }

  selectMetric(name) {
    // The current heatmaps and legend stay until the new data arrives (no blank flash).
    this.state.metric = name;
    this.syncMetrics();
    this.refreshPanels();
    this.state.save();
  }

  setFilter(text) {
    this.state.filter = text;
    this.page.tooltip.hide();
    this.layoutPanels();
    this.state.save();
  }

  setZoom(range) {
    this.state.setZoom(range);
    this.page.tooltip.hide();
    this.layoutPanels();
    this.refreshPanels();
    this.state.save();
  }

  /** Saves the data of the current view as `format` ('csv' or 'json'). */
  async download(format) {
    const { state } = this;
    const runs = this.panels.filter((p) => {
      const info = this.runInfo(p.run);
      return info && info.metrics.includes(state.metric);
    }).map((p) => p.run);
    if (!state.metric || !runs.length) return;
    try {
      const tables = viewTables(await fetchExact(runs, state.metric, state.zoomParams()), state.filter);
      const text = format === 'csv' ? toCSV(tables) : toJSON(tables, state);
      saveText(fileName(state.metric, runs, format), text, format === 'csv' ? 'text/csv' : 'application/json');
      this.downloadError = null;
    } catch (err) {
      this.downloadError = `Could not download: ${err.message}`;
    }
    this.updateStatus();
  }

  openProfileAt(view, col) {
    if (!view.data) return;
    this.openProfile(view.run, view.data.steps[col]);
  }

  async openProfile(run, step) {
    const seq = ++this.profileSeq;
    const { profile } = this.page;
    this.state.profile = { run, step };
    this.profileError = null;
    this.state.save();
    profile.open(run, step, this.catalog.metricInfo);
    this.layoutPanels();
    try {
      const json = await fetchProfile(run, step, PROFILE_SERIES.map((s) => s.key).join(','));
      if (seq !== this.profileSeq) return;
      profile.setData(json);
      profile.el.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    } catch (err) {
      if (seq !== this.profileSeq) return;
      this.profileError = `Could not load depth profile: ${err.message}`;
      profile.setError(this.profileError);
    }
    this.updateStatus();
  }

  updateStatus() {
    const errors = [
      this.runsError,
      ...this.panels.map((p) => p.source.error && `Heatmap for ${p.run}: ${p.source.error}`),
      this.profileError,
      this.downloadError,
    ].filter(Boolean);
    const parts = [];
    if (!this.lastUpdate) {
      parts.push('Loading\u2026');
    } else {
      const { zoom } = this.state;
      if (this.catalog.runs.length === 0) parts.push('Waiting for data');
      if (zoom) parts.push(`Zoomed to steps ${formatStep(zoom[0])}\u2013${formatStep(zoom[1])}`);
      parts.push(`Updated ${this.lastUpdate.toLocaleTimeString()} \u00b7 refreshes every ${POLL_MS / 1000} s`);
    }
    this.page.setStatus(errors, parts);
  }
}

/** Entry point called by TensorBoard. */
export async function render() {
  await loadStylesheet();
  readTheme();
  const app = new App(document.body);
  await app.start();
}
