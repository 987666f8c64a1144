// Drawing of decode.js's results over the frame: class masks, dense maps as colour maps, boxes
// with labels, classification labels. Each task's `type` picks how it is drawn.

/** A distinct colour per class id (golden-angle hues). */
export function colour(i, alpha = 1) {
  return `hsla(${(i * 137.508) % 360}, 85%, 55%, ${alpha})`;
}

function rgbOf(i) {
  const h = ((i * 137.508) % 360) / 60, s = 0.85, l = 0.55;
  const c = (1 - Math.abs(2 * l - 1)) * s, x = c * (1 - Math.abs((h % 2) - 1)), m = l - c / 2;
  const [r, g, b] = [[c, x, 0], [x, c, 0], [0, c, x], [0, x, c], [x, 0, c], [c, 0, x]][Math.floor(h) % 6];
  return [(r + m) * 255, (g + m) * 255, (b + m) * 255];
}

/** Jet-like colour map of t in [0, 1]. */
function jet(t) {
  const f = (v) => 255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - v)));
  return [f(3), f(2), f(1)];
}

/** An RGBA overlay canvas of width x height from `pixel(p) -> [r, g, b, a]`. */
function overlay(width, height, pixel) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(width, height);
  for (let p = 0; p < width * height; p++) image.data.set(pixel(p), 4 * p);
  ctx.putImageData(image, 0, 0);
  return canvas;
}

function maskOverlay(r) {
  const palette = new Map();
  return overlay(r.width, r.height, (p) => {
    const id = r.mask[p];
    if (!palette.has(id)) palette.set(id, [...rgbOf(id), 115]);
    return palette.get(id);
  });
}

/** A dense map as colours: 3 channels (normals, in [-1, 1]) as RGB, else the first channel,
 * probabilities over 0..1 and other values (depth) over their min..max, in a jet colour map. */
function denseOverlay(r) {
  const {map, width, height, channels} = r;
  if (channels === 3) {
    return overlay(width, height, (p) => [0, 1, 2].map((k) => 127.5 * (map[3 * p + k] + 1)).concat(150));
  }
  let lo = 0, hi = 1;
  if (r.kind !== 'probability') {
    lo = Infinity; hi = -Infinity;
    for (let p = 0; p < width * height; p++) { const v = map[p * channels]; lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  const span = Math.max(hi - lo, 1e-6);
  return overlay(width, height, (p) => [...jet((map[p * channels] - lo) / span), 150]);
}

/** Draw `source` on `canvas` (sized to the source's aspect), then every task's results. */
export function drawResults(canvas, source, results, meta, minScore) {
  const sw = source.videoWidth || source.width, sh = source.videoHeight || source.height;
  const width = Math.min(960, Math.max(sw, 320)), height = Math.round(width * sh / sw);
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext('2d');
  ctx.drawImage(source, 0, 0, width, height);
  const labels = [];
  for (const [task, r] of Object.entries(results)) {
    if (r.map) ctx.drawImage(denseOverlay(r), 0, 0, width, height);
  }
  ctx.imageSmoothingEnabled = false;
  for (const [task, r] of Object.entries(results)) {
    if (r.mask) ctx.drawImage(maskOverlay(r), 0, 0, width, height);
  }
  ctx.imageSmoothingEnabled = true;
  ctx.lineWidth = 2;
  ctx.font = '14px sans-serif';
  for (const [task, r] of Object.entries(results)) {
    const names = meta.tasks[task].classes;
    if (r.boxes) {
      r.boxes.forEach(([y0, x0, y1, x1], i) => {
        if (r.scores[i] < minScore) return;
        ctx.strokeStyle = ctx.fillStyle = colour(r.classes[i]);
        ctx.strokeRect(x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height);
        ctx.fillText(`${names[r.classes[i]]} ${r.scores[i].toFixed(2)}`, x0 * width + 2, Math.max(y0 * height - 4, 14));
      });
    }
    if (r.label !== undefined) labels.push(`${task}: ${r.label} ${(100 * r.top_score).toFixed(0)}%`);
    if (r.labels !== undefined) labels.push(`${task}: ${r.labels.join(', ') || '(none)'}`);
    if (r.unsupported) labels.push(`${task}: type ${r.type} not drawn`);
  }
  ctx.fillStyle = 'rgba(0, 0, 0, 0.55)';
  ctx.fillRect(0, height - 22 * labels.length - 6, width, 22 * labels.length + 6);
  ctx.fillStyle = 'white';
  ctx.font = '16px sans-serif';
  labels.forEach((text, i) => ctx.fillText(text, 8, height - 22 * (labels.length - i - 1) - 10));
}
