// Rendering: the tab's layout (toolbar, status line, findings, heatmap card,
// depth profile) and what it shows for a given state. It fetches nothing and
// decides nothing: index.js tells it what to show.

import { Controls } from './controls.js';
import { el } from './dom.js';
import { FindingsPanel } from './findings.js';
import { formatStep, formatValue } from './format.js';
import { filterRows } from './heatmap.js';
import { Legend } from './legend.js';
import { ProfileView } from './profile.js';
import { Tooltip } from './tooltip.js';

const MIN_ROW_PX = 6; // 500 layers -> 3000 px of rows, scrolled inside the panel
const MAX_ROW_PX = 22;

export class Page {
  /**
   * @param {HTMLElement} parent
   * @param {object} on handlers: the Controls' (run, compare, metric, filter,
   *   resetZoom, download), finding(run, finding), closeProfile()
   */
  constructor(parent, on) {
    this.root = el('div', 'gw-app');
    parent.appendChild(this.root);
    this.controls = new Controls(this.root, on);
    this.status = el('div', 'gw-status', 'Loading\u2026');
    this.status.id = 'gw-status';
    this.status.setAttribute('role', 'status');
    this.root.appendChild(this.status);

    this.empty = el('div', 'gw-card gw-empty');
    this.empty.hidden = true;
    const emptyText = el('p', '', 'Train with gradwatch.GradWatch(log_dir) as a Keras callback, e.g. ');
    emptyText.appendChild(el('code', '', 'model.fit(x, y, callbacks=[gradwatch.GradWatch(log_dir)])'));
    emptyText.appendChild(document.createTextNode(', and point TensorBoard at the same log_dir. This page refreshes automatically.'));
    this.empty.append(el('div', 'gw-empty-title', 'No GradWatch data yet.'), emptyText);
    this.root.appendChild(this.empty);

    this.main = el('div', 'gw-main');
    this.main.hidden = true;
    const card = el('section', 'gw-card gw-heatmap-card');
    const head = el('div', 'gw-card-head');
    this.legend = new Legend(head);
    const about = el('div', 'gw-about');
    this.description = el('div', 'gw-description');
    const hint = el('div', 'gw-hint',
      'Drag across a heatmap to zoom the step axis \u00b7 click a column for the depth profile'
      + ' \u00b7 keyboard: Tab to a heatmap, arrow keys move the cursor, Enter opens the profile');
    about.append(this.description, hint);
    head.appendChild(about);
    this.panelHost = el('div', 'gw-panels');
    card.append(head, this.panelHost);
    this.findings = new FindingsPanel(this.main, { select: on.finding });
    this.main.appendChild(card);
    this.tooltip = new Tooltip(this.root);
    // What the keyboard's cursor is on, for screen readers.
    this.cursorText = el('div', 'gw-visually-hidden');
    this.cursorText.id = 'gw-cursor-text';
    this.cursorText.setAttribute('aria-live', 'polite');
    this.root.appendChild(this.cursorText);
    this.profile = new ProfileView(this.main, this.tooltip);
    this.profile.onClose = on.closeProfile;
    // The distributions card (distribution.js) goes here, below the heatmaps.
    this.distributionHost = el('div', 'gw-dist-host');
    this.main.appendChild(this.distributionHost);
    this.root.appendChild(this.main);
  }

  /** Shows the heatmaps, or the "no data yet" card. */
  showRuns(hasRuns) {
    this.empty.hidden = hasRuns;
    this.main.hidden = !hasRuns;
    this.controls.setEnabled(hasRuns);
  }

  /**
   * Pushes data, scale, filter, step domain and row height to every panel.
   * @param {Array<{run, view, source}>} panels
   */
  layoutPanels(panels, state, scale, domain) {
    // Each panel picks a row height that fits its own (filtered) layer count.
    const maxBodyH = Math.max(240, Math.min(620, window.innerHeight - 300));
    for (const p of panels) {
      const data = p.source.data;
      const rows = data ? filterRows(data.layers, state.filter).length : 0;
      const rowH = rows ? Math.max(MIN_ROW_PX, Math.min(MAX_ROW_PX, Math.floor(maxBodyH / rows))) : MAX_ROW_PX;
      const props = { data, filter: state.filter, domain, rowH, maxBodyH };
      if (data && data.metric === state.metric && scale) props.scale = scale;
      props.marker = state.profile && state.profile.run === p.run ? state.profile.step : null;
      props.regions = this.findings.regionsOf(p.run);
      p.view.set(props);
    }
  }

  /** The status line: `errors` in red, else `parts` joined. */
  setStatus(errors, parts) {
    this.status.classList.toggle('gw-error', errors.length > 0);
    this.status.textContent = (errors.length ? errors : parts).join(' \u00b7 ');
  }

  /**
   * The tooltip of a heatmap hit (a cell or a layer label) at (x, y).
   * @param {function} labelOf a metric's label
   * @param {string} kind the metric's colour scale (fraction and count columns keep their max)
   */
  showHit(view, hit, x, y, labelOf, kind) {
    const n = hit.kind && view.data ? view.data.layers.length : 0;
    const rows = [['run', view.run], ['layer', `${hit.layer + 1} of ${n}`]];
    if (hit.kind === 'cell') {
      const [a, b] = hit.range;
      let label = labelOf(view.data.metric);
      if (a === b) {
        rows.push(['step', formatStep(hit.step)]);
      } else {
        // Merged column: the backend keeps the worst (max) value for fraction /
        // count metrics and the value at the column's last step otherwise.
        rows.push(['steps', `${formatStep(a)}\u2013${formatStep(b)}`]);
        label += kind === 'fraction' || kind === 'count' ? ' (max)' : ` (at step ${formatStep(hit.step)})`;
      }
      rows.push([label, formatValue(hit.value)]);
    }
    this.tooltip.show(x, y, hit.name, rows);
    return rows;
  }

  /** Says what the keyboard's cursor is on (the live region). */
  announce(name, rows) {
    this.cursorText.textContent = [name, ...rows.map(([k, v]) => `${k}: ${v}`)].join(', ');
  }
}
