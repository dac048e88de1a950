// The keyboard's cursor on a heatmap panel.
//
// Tab reaches the heatmap; the arrow keys move a cell cursor (drawn as the
// mouse's hover is), Page Up / Page Down move ten layers, Home / End go to the
// first / last column in view, and Enter or Space opens the depth profile of
// the cursor's column. The cell is described as the mouse's hover describes it.

const PAGE_ROWS = 10;
const TOP = 6; // the heatmap's top margin (heatmap.js)

/** [first, last] columns shown in the view's step domain. */
function columnsInView(view) {
  const d = view.data;
  const [d0, d1] = view.domain;
  let first = 0;
  while (first < d.steps.length - 1 && d.ends[first] <= d0) first++;
  let last = d.steps.length - 1;
  while (last > first && d.starts[last] >= d1) last--;
  return [first, last];
}

/**
 * Makes `view`'s heatmap reachable and movable by keyboard.
 * @param {object} cb callbacks: show(view, hit, clientX, clientY), hide(), open(view, col)
 */
export function attachCursor(view, cb) {
  const canvas = view.canvas;
  canvas.tabIndex = 0;
  canvas.setAttribute('role', 'img');
  canvas.setAttribute('aria-label',
    `Heatmap of run ${view.run}: arrow keys move the cursor, Enter opens the depth profile`);

  const ready = () => view.data && view.rows.length > 0 && view.data.steps.length > 0 && view.colOf;

  const place = (r, col) => {
    const [first, last] = columnsInView(view);
    r = Math.max(0, Math.min(view.rows.length - 1, r));
    col = Math.max(first, Math.min(last, col));
    view.hover = { r, col };
    view.scrollToLayer(view.data.layers[view.rows[r]]);
    view.requestDraw();
    const rect = canvas.getBoundingClientRect();
    const d = view.data;
    const x = rect.left + (view.stepToX(d.starts[col]) + Math.min(view.stepToX(d.ends[col]), view.bodyX + view.bodyW)) / 2;
    const y = rect.top + TOP + (r + 1) * view.rowH - view.scroller.scrollTop;
    cb.show(view, view.cellHit(r, col), x, y);
  };

  canvas.addEventListener('focus', () => {
    if (!ready()) return;
    if (view.hover) place(view.hover.r, view.hover.col);
    else place(Math.floor(view.scroller.scrollTop / view.rowH), columnsInView(view)[1]);
  });
  canvas.addEventListener('blur', () => {
    view.hover = null;
    view.requestDraw();
    cb.hide();
  });
  canvas.addEventListener('keydown', (e) => {
    if (!ready()) return;
    const { r, col } = view.hover || { r: 0, col: columnsInView(view)[1] };
    const [first, last] = columnsInView(view);
    const moves = {
      ArrowLeft: [r, col - 1],
      ArrowRight: [r, col + 1],
      ArrowUp: [r - 1, col],
      ArrowDown: [r + 1, col],
      PageUp: [r - PAGE_ROWS, col],
      PageDown: [r + PAGE_ROWS, col],
      Home: [r, first],
      End: [r, last],
    };
    if (moves[e.key]) {
      e.preventDefault();
      place(...moves[e.key]);
    } else if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      cb.open(view, col);
    }
  });
}
