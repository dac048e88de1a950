// Backend access: relative-URL fetches and decoding of the JSON payloads.

/** Error carrying the server's plain-text explanation. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** GET a relative URL and parse JSON; non-2xx responses throw ApiError(text). */
export async function getJSON(path, params) {
  const query = params ? `?${new URLSearchParams(params).toString()}` : '';
  let response;
  try {
    response = await fetch(`./${path}${query}`, { credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(`cannot reach the server (${err.message})`, 0);
  }
  const text = await response.text();
  if (!response.ok) {
    const body = text.trim().slice(0, 500) || response.statusText;
    throw new ApiError(`${body} (HTTP ${response.status})`, response.status);
  }
  try {
    return { json: JSON.parse(text), text };
  } catch (err) {
    throw new ApiError(`invalid JSON from ./${path}`, response.status);
  }
}

/** Converts a JSON value (number or TensorBoard's "NaN"/"Infinity" strings) to a number. */
export function toNumber(v) {
  if (typeof v === 'number') return v;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return NaN; // "NaN", null, anything unexpected: "no value"
}

/** Decodes a list of per-layer values into a Float64Array. */
export function decodeVector(list, length) {
  const out = new Float64Array(length);
  for (let i = 0; i < length; i++) out[i] = toNumber(list ? list[i] : undefined);
  return out;
}

/**
 * Decodes a ./heatmap response into flat typed arrays.
 * Column c spans steps [starts[c], ends[c]): from its first merged step to the
 * start of the next column (the last column gets at least a typical width),
 * so the step axis is linear and has no holes.
 */
export function decodeHeatmap(json) {
  const layers = Array.isArray(json.layers) ? json.layers.map(String) : [];
  const steps = Array.isArray(json.steps) ? json.steps.map(Number) : [];
  const ncols = steps.length;
  const nl = layers.length;
  const ranges = Array.isArray(json.step_ranges) && json.step_ranges.length === ncols
    ? json.step_ranges.map((r) => [Number(r[0]), Number(r[1])])
    : steps.map((s) => [s, s]);
  const values = new Float64Array(ncols * nl);
  const rows = Array.isArray(json.values) ? json.values : [];
  for (let c = 0; c < ncols; c++) {
    const col = rows[c] || [];
    for (let l = 0; l < nl; l++) values[c * nl + l] = toNumber(col[l]);
  }
  const starts = new Float64Array(ncols);
  const ends = new Float64Array(ncols);
  for (let c = 0; c < ncols; c++) starts[c] = Math.min(ranges[c][0], steps[c]);
  const typical = ncols > 1 ? Math.max(1, (starts[ncols - 1] - starts[0]) / (ncols - 1)) : 1;
  for (let c = 0; c < ncols; c++) {
    ends[c] = c + 1 < ncols
      ? starts[c + 1]
      : Math.max(ranges[c][1] + 1, starts[c] + typical);
  }
  return {
    run: String(json.run),
    metric: String(json.metric),
    layers,
    steps,
    ranges,
    starts,
    ends,
    values,
    totalSteps: Number(json.total_steps) || ncols,
  };
}
