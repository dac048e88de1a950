// The page's light or dark palette for what canvases draw.
//
// TensorBoard passes no theme to a plugin's iframe, so the page follows the
// browser's `prefers-color-scheme`. gradwatch.css defines every colour once,
// as custom properties with a dark variant; canvases read the same properties
// here. The data's colour maps (colors.js) are the same in both themes.

const PROPERTIES = {
  card: '--gw-card', // canvas background
  plot: '--gw-plot', // an empty plot area
  text: '--gw-text-2', // labels
  strong: '--gw-text', // the label under the cursor
  muted: '--gw-muted', // axis labels
  faint: '--gw-faint', // ticks, the scroll thumb
  line: '--gw-line', // plot borders
  grid: '--gw-grid', // grid lines, the scroll track
  forward: '--gw-forward', // the depth profile's two series
  backward: '--gw-backward',
};

/** The current palette: {card, plot, text, ...} as CSS colours. */
export const theme = {};

const DARK = '(prefers-color-scheme: dark)';

/** Reads the palette from the stylesheet (call once it has loaded). */
export function readTheme() {
  const style = getComputedStyle(document.documentElement);
  for (const [key, property] of Object.entries(PROPERTIES)) theme[key] = style.getPropertyValue(property).trim();
  theme.dark = window.matchMedia(DARK).matches;
}

/** Calls `changed` after the browser switches between light and dark. */
export function onThemeChange(changed) {
  window.matchMedia(DARK).addEventListener('change', () => {
    readTheme();
    changed();
  });
}
