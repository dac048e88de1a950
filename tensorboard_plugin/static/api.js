// Backend access: relative-URL fetches and decoding of the JSON payloads.

/** Error carrying the server's plain-text explanation. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

/** GET a relative URL; non-2xx responses throw ApiError(text). */
async function get(path, params) {
  const query = params ? `?${new URLSearchParams(params).toString()}` : '';
  let response;
  try {
    response = await fetch(`./${path}${query}`, { credentials: 'same-origin' });
  } catch (err) {
    throw new ApiError(`cannot reach the server (${err.message})`, 0);
  }
  if (!response.ok) {
    const body = (await response.text()).trim().slice(0, 500) || response.statusText;
    throw new ApiError(`${body} (HTTP ${response.status})`, response.status);
  }
  return response;
}

/** GET a relative URL and parse JSON: {json, text}. */
export async function getJSON(path, params) {
  const text = await (await get(path, params)).text();
  try {
    return { json: JSON.parse(text), text };
  } catch (err) {
    throw new ApiError(`invalid JSON from ./${path}`, 200);
  }
}

/**
 * GET ./heatmap in its binary format (docs/http_api.md): a little-endian
 * uint32 header length, the JSON header, then one `encoding.bits`-bit code
 * per cell, packed least significant bit first.
 * Returns {header, values: Float64Array (columns x layers), bytes}.
 */
export async function getHeatmap(params) {
  const buffer = await (await get('heatmap', { ...params, format: 'binary' })).arrayBuffer();
  return decodeBinaryHeatmap(buffer);
}

/** Decodes a binary ./heatmap body; NaN and +-Infinity come back as such. */
export function decodeBinaryHeatmap(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 4) throw new ApiError('truncated heatmap', 200);
  const headLength = view.getUint32(0, true);
  let header;
  try {
    header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headLength)));
  } catch (err) {
    throw new ApiError('invalid heatmap header', 200);
  }
  const enc = header.encoding || {};
  const bits = Number(enc.bits);
  if (!(bits >= 1 && bits <= 16)) throw new ApiError('invalid heatmap header', 200);
  const cells = (Number(header.columns) || 0) * (Array.isArray(header.layers) ? header.layers.length : 0);
  const start = 4 + headLength;
  if (buffer.byteLength < start + Math.ceil((cells * bits) / 8)) throw new ApiError('truncated heatmap', 200);
  const offset = Number(enc.offset);
  const step = Number(enc.step);
  const log = enc.transform === 'log10';
  // One decoded value per code, computed once.
  const table = new Float64Array(2 ** bits);
  for (let c = 0; c < table.length; c++) {
    const t = offset + c * step;
    table[c] = log ? Math.pow(10, t) : t;
  }
  table[enc.nan] = NaN;
  table[enc.pos_inf] = Infinity;
  table[enc.neg_inf] = -Infinity;
  if (log) table[enc.zero] = 0;
  const bytes = new Uint8Array(buffer, start);
  const mask = 2 ** bits - 1;
  const values = new Float64Array(cells);
  // A bit reservoir: at most bits + 7 <= 23 bits wait in `pending`.
  let pending = 0;
  let held = 0;
  let at = 0;
  for (let i = 0; i < cells; i++) {
    while (held < bits) {
      pending |= bytes[at++] << held;
      held += 8;
    }
    values[i] = table[pending & mask];
    pending >>>= bits;
    held -= bits;
  }
  return { header, values, bytes: buffer.byteLength };
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
 * Turns a decoded ./heatmap ({header, values}) into the panel's data.
 * Column c spans steps [starts[c], ends[c]): from its first merged step to the
 * start of the next column (the last column gets at least a typical width),
 * so the step axis is linear and has no holes.
 */
export function heatmapData({ header, values }) {
  const layers = Array.isArray(header.layers) ? header.layers.map(String) : [];
  const ranges = Array.isArray(header.step_ranges)
    ? header.step_ranges.map((r) => [Number(r[0]), Number(r[1])])
    : [];
  const ncols = ranges.length;
  // A column's step is its last: where non-merging metrics take their value.
  const steps = ranges.map((r) => r[1]);
  const starts = new Float64Array(ncols);
  const ends = new Float64Array(ncols);
  for (let c = 0; c < ncols; c++) starts[c] = ranges[c][0];
  const typical = ncols > 1 ? Math.max(1, (starts[ncols - 1] - starts[0]) / (ncols - 1)) : 1;
  for (let c = 0; c < ncols; c++) {
    ends[c] = c + 1 < ncols
      ? starts[c + 1]
      : Math.max(ranges[c][1] + 1, starts[c] + typical);
  }
  return {
    run: String(header.run),
    metric: String(header.metric),
    layers,
    steps,
    ranges,
    starts,
    ends,
    values,
    totalSteps: Number(header.total_steps) || 0,
    rangeSteps: Number(header.range_steps) || 0,
    firstStep: Number(header.first_step),
    lastStep: Number(header.last_step),
  };
}
