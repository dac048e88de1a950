// The view's state: which runs, metric, layer filter, zoom and depth profile
// the tab shows, kept in TensorBoard's URL so that a reload or a shared link
// shows the same view.
//
// TensorBoard names the active tab in the top page's hash (`#gradwatch`) and
// keeps whatever follows an `&`; the tab's iframe is served from the same
// origin, so it can read and rewrite that hash. The state goes after the tab's
// name as `&gw_run=...&gw_metric=...`, written with history.replaceState (no
// new history entry for every click).

const TAB = 'gradwatch';
const KEYS = ['run', 'compare', 'metric', 'filter', 'zoom', 'step_run', 'step', 'dist', 'dist_name', 'dist_layer', 'dist_step'];
const PREFIX = 'gw_';
let known = null; // the view's part of the hash as this page last saw or wrote it

/** TensorBoard's window, or this one when the page is opened on its own. */
function topWindow() {
  try {
    if (window.parent && window.parent.location.href) return window.parent;
  } catch (err) {
    // Another origin: keep the state in this frame's own URL.
  }
  return window;
}

/** The view's part of a hash: its gw_ parameters, in a stable order. */
function viewPart(hash) {
  const params = new URLSearchParams(splitHash(hash)[1]);
  return KEYS.map((key) => `${key}=${params.get(PREFIX + key)}`).join('&');
}

function splitHash(hash) {
  const text = hash.replace(/^#/, '');
  const cut = text.indexOf('&');
  return cut < 0 ? [text, ''] : [text.slice(0, cut), text.slice(cut + 1)];
}

/**
 * The state in the URL: {run, compare, metric, filter, zoom: [lo, hi] | null,
 * step_run, step: number | null, dist, dist_name, dist_layer, dist_step:
 * number | null}; a field missing from the URL is null.
 */
function readViewState() {
  const [, rest] = splitHash(topWindow().location.hash);
  const params = new URLSearchParams(rest);
  const state = {};
  for (const key of KEYS) state[key] = params.get(PREFIX + key);
  const zoom = (state.zoom || '').split(',').map(Number);
  state.zoom = zoom.length === 2 && zoom.every(Number.isFinite) && zoom[0] < zoom[1] ? zoom : null;
  for (const key of ['step', 'dist_step']) {
    const step = Number(state[key]);
    state[key] = state[key] !== null && Number.isInteger(step) && step >= 0 ? step : null;
  }
  return state;
}

/** Writes `state` (fields as readViewState returns them; null or '' drops one). */
function writeViewState(state) {
  const win = topWindow();
  const [tab, rest] = splitHash(win.location.hash);
  if (win !== window && tab !== TAB) return; // another tab is showing: its URL
  const params = new URLSearchParams(rest);
  for (const key of KEYS) params.delete(PREFIX + key);
  for (const key of KEYS) {
    let value = state[key];
    if (key === 'zoom' && value) value = value.join(',');
    if (value !== null && value !== undefined && value !== '') params.set(PREFIX + key, String(value));
  }
  const query = params.toString();
  const hash = `#${tab}${query ? `&${query}` : ''}`;
  if (hash !== win.location.hash) {
    win.history.replaceState(win.history.state, '', `${win.location.pathname}${win.location.search}${hash}`);
  }
  known = viewPart(hash);
}

/**
 * Calls `changed` when someone else puts another view in the URL (a link
 * pasted into the address bar of an open tab); not when writeViewState does,
 * nor when another TensorBoard tab is chosen (TensorBoard keeps what follows
 * the tab's name).
 */
export function onViewStateChange(changed) {
  const win = topWindow();
  known = viewPart(win.location.hash);
  win.addEventListener('hashchange', () => {
    const part = viewPart(win.location.hash);
    if (splitHash(win.location.hash)[0] === TAB && part !== known) {
      known = part;
      changed();
    }
  });
}

/** What the tab shows; the App changes it, `save()` puts it in the URL. */
export class ViewState {
  constructor() {
    this.run = null;
    this.compare = ''; // the second run shown beside `run`, or ''
    this.metric = null;
    this.profile = null; // {run, step} of the open depth profile
    // The view a link or a reload asks for, applied as its runs and data arrive.
    this.pending = readViewState();
    this.filter = this.pending.filter || '';
    this.zoom = this.pending.zoom; // [first, last) steps shown, or null for all
    // The distributions card: its view ('time', 'depth', 'units'), series, layer and step.
    const p = this.pending;
    this.dist = { view: p.dist, name: p.dist_name, layer: p.dist_layer, step: p.dist_step };
  }

  /** The runs shown, `run` first. */
  selectedRuns() {
    const names = [];
    if (this.run) names.push(this.run);
    if (this.compare && this.compare !== this.run) names.push(this.compare);
    return names;
  }

  /** Zooms to [a, b) (at least 2 steps wide, whole steps), or shows every step for null. */
  setZoom(range) {
    if (!range) {
      this.zoom = null;
      return;
    }
    let [a, b] = range;
    if (b - a < 2) {
      const mid = (a + b) / 2;
      a = mid - 1;
      b = mid + 1;
    }
    // Whole steps: what the URL keeps, and a recorded step is in or out.
    this.zoom = [Math.floor(a), Math.ceil(b)];
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

  /** Puts the state in the URL. */
  save() {
    writeViewState({
      run: this.run,
      compare: this.compare,
      metric: this.metric,
      filter: this.filter,
      zoom: this.zoom,
      step_run: this.profile ? this.profile.run : null,
      step: this.profile ? this.profile.step : null,
      dist: this.dist.view,
      dist_name: this.dist.name,
      dist_layer: this.dist.layer,
      dist_step: this.dist.view === 'depth' ? this.dist.step : null,
    });
  }
}
