// The findings panel: named problems of the selected run(s), from ./findings.
//
// Each finding is listed with its severity, rule, message and remedy; the
// heatmap outlines its layers x steps (see HeatmapView.drawRegions). Clicking
// a finding (a real button: Enter and Space work too) calls `select(run,
// finding)`, which selects its metric and zooms to its region. Every name goes in through textContent.

import { getJSON } from './api.js';
import { el } from './dom.js';

/** Decodes one finding of a ./findings response (anything malformed is dropped). */
export function decodeFinding(f) {
  if (!f || typeof f !== 'object') return null;
  const first = Number(f.first_step);
  const last = Number(f.last_step);
  if (!Number.isFinite(first) || !Number.isFinite(last)) return null;
  return {
    rule: String(f.rule || ''),
    severity: f.severity === 'warning' ? 'warning' : 'info',
    layers: Array.isArray(f.layers) ? f.layers.map(String) : [],
    first,
    last,
    message: String(f.message || ''),
    remedy: String(f.remedy || ''),
    metric: String(f.metric || ''),
    ongoing: Boolean(f.ongoing),
  };
}

export class FindingsPanel {
  /**
   * @param {HTMLElement} parent
   * @param {object} cb callbacks: select(run, finding)
   */
  constructor(parent, cb) {
    this.cb = cb;
    this.byRun = new Map(); // run -> {text, available, findings, error}
    this.runs = [];
    this.selected = null; // {run, index}
    this.renderedRuns = null; // the runs the list shows, joined by newlines
    this.el = el('section', 'gw-card gw-findings');
    this.el.id = 'gw-findings';
    const head = el('div', 'gw-findings-head');
    head.appendChild(el('span', 'gw-findings-title', 'Findings'));
    this.counts = el('span', 'gw-findings-counts');
    head.appendChild(this.counts);
    this.body = el('div', 'gw-findings-body');
    this.el.append(head, this.body);
    parent.appendChild(this.el);
  }

  /** Fetches the findings of `runs` (the selected runs); redraws on change. */
  async refresh(runs) {
    this.runs = runs.slice();
    for (const run of [...this.byRun.keys()]) if (!runs.includes(run)) this.byRun.delete(run);
    let changed = false;
    await Promise.all(runs.map(async (run) => {
      const prev = this.byRun.get(run);
      try {
        const { json, text } = await getJSON('findings', { run });
        if (prev && prev.text === text) return;
        if (this.selected && this.selected.run === run) this.selected = null;
        const findings = (Array.isArray(json.findings) ? json.findings : []).map(decodeFinding).filter(Boolean);
        this.byRun.set(run, { text, available: Boolean(json.available), findings, error: null });
        changed = true;
      } catch (err) {
        const error = `Could not load findings: ${err.message}`;
        if (!prev || prev.error !== error) {
          this.byRun.set(run, { text: null, available: false, findings: [], error });
          changed = true;
        }
      }
    }));
    if (changed || this.renderedRuns !== runs.join('\n')) this.render();
    return changed;
  }

  findingsOf(run) {
    const entry = this.byRun.get(run);
    return entry ? entry.findings : [];
  }

  /** Heatmap regions of one run's findings. */
  regionsOf(run) {
    return this.findingsOf(run).map((f, index) => ({
      layers: new Set(f.layers),
      first: f.first,
      last: f.last,
      severity: f.severity,
      selected: Boolean(this.selected && this.selected.run === run && this.selected.index === index),
    }));
  }

  select(run, index) {
    this.selected = { run, index };
    for (const item of this.body.querySelectorAll('.gw-finding')) {
      const on = item.dataset.run === run && Number(item.dataset.index) === index;
      item.classList.toggle('gw-selected', on);
      item.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }

  render() {
    this.renderedRuns = this.runs.join('\n');
    const body = [];
    let warnings = 0;
    let infos = 0;
    const several = this.runs.length > 1;
    for (const run of this.runs) {
      const entry = this.byRun.get(run);
      if (several) body.push(el('div', 'gw-findings-run', run));
      if (!entry) {
        body.push(el('div', 'gw-findings-empty', 'Loading\u2026'));
        continue;
      }
      if (entry.error) {
        const note = el('div', 'gw-findings-empty gw-error', entry.error);
        body.push(note);
        continue;
      }
      if (!entry.available) {
        body.push(el('div', 'gw-findings-empty',
          'No findings recorded for this run yet: GradWatch writes them as training runs and when fit ends.'));
        continue;
      }
      if (entry.findings.length === 0) {
        body.push(el('div', 'gw-findings-empty gw-findings-healthy', 'No findings: nothing unhealthy detected in this run.'));
        continue;
      }
      const list = el('ul', 'gw-findings-list');
      entry.findings.forEach((f, index) => {
        if (f.severity === 'warning') warnings++;
        else infos++;
        const item = el('button', `gw-finding gw-${f.severity}`);
        item.type = 'button';
        item.dataset.run = run;
        item.dataset.index = String(index);
        item.dataset.rule = f.rule;
        item.title = f.metric ? `Show ${f.metric} around this finding` : 'Show this finding';
        const line = el('span', 'gw-finding-line');
        line.append(
          el('span', `gw-badge gw-badge-${f.severity}`, f.severity),
          el('span', 'gw-finding-rule', f.rule),
          el('span', 'gw-finding-message', f.message),
        );
        item.append(line, el('span', 'gw-finding-remedy', f.remedy));
        const choose = () => {
          this.select(run, index);
          this.cb.select(run, f);
        };
        item.addEventListener('click', choose);
        const entryItem = el('li');
        entryItem.appendChild(item);
        list.appendChild(entryItem);
      });
      body.push(list);
    }
    this.body.replaceChildren(...body);
    const parts = [];
    if (warnings) parts.push(`${warnings} warning${warnings > 1 ? 's' : ''}`);
    if (infos) parts.push(`${infos} info`);
    this.counts.textContent = parts.join(' \u00b7 ');
    if (this.selected) this.select(this.selected.run, this.selected.index);
  }
}
