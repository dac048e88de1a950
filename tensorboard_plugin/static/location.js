// The view's state in TensorBoard's URL, so that a reload or a shared link
// shows the same view.
//
// TensorBoard names the active tab in the top page's hash (`#gradwatch`) and
// keeps whatever follows an `&`; the tab's iframe is served from the same
// origin, so it can read and rewrite that hash. The state goes after the tab's
// name as `&gw_run=...&gw_metric=...`, written with history.replaceState (no
// new history entry for every click).

const TAB = 'gradwatch';
const KEYS = ['run', 'compare', 'metric', 'filter', 'zoom', 'step_run', 'step'];
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
 * step_run, step: number | null}; a field missing from the URL is null.
 */
export function readViewState() {
  const [, rest] = splitHash(topWindow().location.hash);
  const params = new URLSearchParams(rest);
  const state = {};
  for (const key of KEYS) state[key] = params.get(PREFIX + key);
  const zoom = (state.zoom || '').split(',').map(Number);
  state.zoom = zoom.length === 2 && zoom.every(Number.isFinite) && zoom[0] < zoom[1] ? zoom : null;
  const step = Number(state.step);
  state.step = state.step !== null && Number.isInteger(step) && step >= 0 ? step : null;
  return state;
}

/** Writes `state` (fields as readViewState returns them; null or '' drops one). */
export function writeViewState(state) {
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
