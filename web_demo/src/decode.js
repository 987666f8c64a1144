// The model contract of an mtl-tf export in plain JS (no DOM, no LiteRT): metadata.json's
// outputs -> per-task results, as mtl_tf.inference.Predictor.predict computes them in Python
// (and export/jetson/run.py without TensorFlow). Dispatches on each task's `type`.

/** real = scale * (q - zero_point) for int8/uint8 outputs that metadata.json says are quantized. */
export function dequantize(data, spec) {
  const q = (spec && spec.quantization) || {};
  if (!q.scale || !(data instanceof Int8Array || data instanceof Uint8Array)) return data;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = q.scale * (data[i] - q.zero_point);
  return out;
}

/** uint8 RGB pixels as the artifact's image input (q = round(pixel / scale) + zero_point when
 * the input is quantized, e.g. an int8 input takes pixel - 128). */
export function quantizeInput(rgb, input) {
  const q = input.quantization || {};
  if (input.dtype === 'float32') return Float32Array.from(rgb);
  if (!q.scale) return input.dtype === 'int8' ? Int8Array.from(rgb, (v) => v - 128) : rgb;
  const [lo, hi] = input.dtype === 'int8' ? [-128, 127] : [0, 255];
  const Type = input.dtype === 'int8' ? Int8Array : Uint8Array;
  return Type.from(rgb, (v) => Math.min(hi, Math.max(lo, Math.round(v / q.scale) + q.zero_point)));
}

/** {task: {kind: {data, shape}}} from {outputName: {data, shape}} through metadata.json's table
 * (each output names its task and kind); int8 outputs are dequantized. */
export function byTask(meta, outputs) {
  const tasks = {};
  for (const [name, value] of Object.entries(outputs)) {
    const spec = meta.outputs[name];
    if (!spec) throw new Error(`model output '${name}' is not in metadata.json`);
    (tasks[spec.task] ||= {})[spec.kind] = {data: dequantize(value.data, spec), shape: value.shape};
  }
  return tasks;
}

const MAX_LOG_SCALE = Math.log(1000 / 16); // as mtl_tf/tasks/detection/boxes.py

/** SSD box encodings [A, 4] -> normalized [ymin, xmin, ymax, xmax] clipped to [0, 1], with the
 * anchors (cy, cx, h, w) and box_variance of metadata.json. */
export function decodeBoxes(enc, anchors, variance) {
  const n = anchors.length;
  const out = new Float32Array(n * 4);
  const clip = (v) => Math.min(1, Math.max(0, v));
  for (let i = 0; i < n; i++) {
    const [acy, acx, ah, aw] = anchors[i];
    const cy = enc[4 * i] * variance[0] * ah + acy;
    const cx = enc[4 * i + 1] * variance[1] * aw + acx;
    const h = Math.exp(Math.min(enc[4 * i + 2] * variance[2], MAX_LOG_SCALE)) * ah;
    const w = Math.exp(Math.min(enc[4 * i + 3] * variance[3], MAX_LOG_SCALE)) * aw;
    out.set([clip(cy - h / 2), clip(cx - w / 2), clip(cy + h / 2), clip(cx + w / 2)], 4 * i);
  }
  return out;
}

function iou(b, i, j) {
  const [ay0, ax0, ay1, ax1] = [Math.min(b[4 * i], b[4 * i + 2]), Math.min(b[4 * i + 1], b[4 * i + 3]),
    Math.max(b[4 * i], b[4 * i + 2]), Math.max(b[4 * i + 1], b[4 * i + 3])];
  const [by0, bx0, by1, bx1] = [Math.min(b[4 * j], b[4 * j + 2]), Math.min(b[4 * j + 1], b[4 * j + 3]),
    Math.max(b[4 * j], b[4 * j + 2]), Math.max(b[4 * j + 1], b[4 * j + 3])];
  const areaA = (ay1 - ay0) * (ax1 - ax0), areaB = (by1 - by0) * (bx1 - bx0);
  if (areaA <= 0 || areaB <= 0) return 0;
  const inter = Math.max(0, Math.min(ay1, by1) - Math.max(ay0, by0)) * Math.max(0, Math.min(ax1, bx1) - Math.max(ax0, bx0));
  return inter / (areaA + areaB - inter);
}

/** Per-class greedy NMS (a box is dropped when its IoU with a kept box of its class > nms_iou),
 * scores > score_threshold, at most max_detections per class, then the top max_detections by
 * score over all classes: tf.image.combined_non_max_suppression, as the Python Predictor. */
export function perClassNms(boxes, scores, numClasses, params) {
  const anchors = boxes.length / 4;
  const picked = [];
  for (let c = 0; c < numClasses; c++) {
    const order = [];
    for (let a = 0; a < anchors; a++) if (scores[a * numClasses + c] > params.score_threshold) order.push(a);
    order.sort((x, y) => scores[y * numClasses + c] - scores[x * numClasses + c] || x - y);
    const kept = [];
    for (const a of order) {
      if (kept.length >= params.max_detections) break;
      if (kept.every((k) => iou(boxes, a, k) <= params.nms_iou)) kept.push(a);
    }
    for (const a of kept) picked.push({anchor: a, cls: c, score: scores[a * numClasses + c]});
  }
  picked.sort((x, y) => y.score - x.score);
  const top = picked.slice(0, params.max_detections);
  return {
    boxes: top.map((p) => Array.from(boxes.subarray(4 * p.anchor, 4 * p.anchor + 4))),
    scores: top.map((p) => p.score),
    classes: top.map((p) => p.cls),
  };
}

/** Bilinear resize (half-pixel centers, as tf.image.resize) of an [h, w, c] map to [H, W, c]. */
export function resizeBilinear(data, h, w, c, H, W) {
  if (h === H && w === W) return data;
  const out = new Float32Array(H * W * c);
  const sy = h / H, sx = w / W;
  for (let y = 0; y < H; y++) {
    const fy = Math.max(0, (y + 0.5) * sy - 0.5), y0 = Math.min(Math.floor(fy), h - 1), y1 = Math.min(y0 + 1, h - 1), dy = fy - y0;
    for (let x = 0; x < W; x++) {
      const fx = Math.max(0, (x + 0.5) * sx - 0.5), x0 = Math.min(Math.floor(fx), w - 1), x1 = Math.min(x0 + 1, w - 1), dx = fx - x0;
      for (let k = 0; k < c; k++) {
        const top = data[(y0 * w + x0) * c + k] * (1 - dx) + data[(y0 * w + x1) * c + k] * dx;
        const bottom = data[(y1 * w + x0) * c + k] * (1 - dx) + data[(y1 * w + x1) * c + k] * dx;
        out[(y * W + x) * c + k] = top * (1 - dy) + bottom * dy;
      }
    }
  }
  return out;
}

/** Class ids [H * W] of logits [H, W, C] (the first of equal maxima, as argmax). */
export function argmaxMap(data, hw, c) {
  const out = new Uint8Array(hw);
  for (let p = 0; p < hw; p++) {
    let best = 0;
    for (let k = 1; k < c; k++) if (data[p * c + k] > data[p * c + best]) best = k;
    out[p] = best;
  }
  return out;
}

function detection(kinds, params) {
  if (kinds.count) { // NMS ran in the graph
    const n = kinds.count.data[0];
    const boxes = [];
    for (let i = 0; i < n; i++) boxes.push(Array.from(kinds.boxes.data.subarray(4 * i, 4 * i + 4)));
    return {boxes, scores: Array.from(kinds.scores.data.subarray(0, n)), classes: Array.from(kinds.classes.data.subarray(0, n))};
  }
  const boxes = kinds.boxes ? kinds.boxes.data : decodeBoxes(kinds.box_encodings.data, params.anchors_cy_cx_h_w, params.box_variance);
  const shape = kinds.scores.shape;
  return perClassNms(boxes, kinds.scores.data, shape[shape.length - 1], params);
}

function segmentation(kinds, params, imageSize) {
  const [, h, w, c] = kinds.logits.shape;
  const [H, W] = imageSize;
  return {mask: argmaxMap(resizeBilinear(kinds.logits.data, h, w, c, H, W), H * W, c), height: H, width: W};
}

function classification(kinds, params) {
  const p = kinds.probabilities.data;
  let best = 0;
  for (let k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
  return {probabilities: Array.from(p), top_class: best, top_score: p[best], label: params.classes[best]};
}

function multilabel(kinds, params) {
  const p = Array.from(kinds.probabilities.data);
  return {probabilities: p, present: p.map((v) => v >= params.threshold),
    labels: params.classes.filter((_, i) => p[i] >= params.threshold)};
}

function dense(kinds, params, imageSize, type) {
  const [kind, value] = Object.entries(kinds)[0];
  const [, h, w, c] = value.shape;
  return {map: value.data, height: h, width: w, channels: c, kind, type};
}

/** What each task type's outputs become; a dense output of a type not listed is a map. */
export const ANALYSERS = {detection, segmentation, classification, multilabel};

/** {task: result} of one frame's outputs: detection {boxes, scores, classes}, segmentation
 * {mask} (class ids at the input size), classification {top_class, ...}, multilabel {present},
 * any dense task (depth, normals, saliency, boundaries, ...) {map}. */
export function analyse(meta, outputs) {
  const imageSize = meta.input.shape.slice(1, 3);
  const results = {};
  for (const [task, kinds] of Object.entries(byTask(meta, outputs))) {
    const params = meta.tasks[task];
    const type = params.type || task;
    const analyser = ANALYSERS[type];
    if (analyser) results[task] = {type, ...analyser(kinds, params, imageSize)};
    else if (Object.keys(kinds).length === 1 && Object.values(kinds)[0].shape.length === 4) results[task] = dense(kinds, params, imageSize, type);
    else results[task] = {type, unsupported: true};
  }
  return results;
}
