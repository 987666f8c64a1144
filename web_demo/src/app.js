// The browser demo: an mtl-tf export on a camera, a video file or an image, run by LiteRT.js
// (WebGPU when the browser has it, else WASM), with everything read from metadata.json.
// Served by `mtl-tf demo EXPORT_DIR`; `?bench=1` times the multitask model against the
// single-task models (`mtl-tf demo EXPORT_DIR --bench BENCH_DIR`).
import {loadLiteRt, loadAndCompile, Tensor, isWebGPUSupported, supportsFeature} from '@litertjs/core';
import {analyse, quantizeInput} from './decode.js';
import {drawResults} from './draw.js';
import {runBench} from './bench.js';

const query = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const state = {model: null, meta: null, name: null, accelerator: null, threads: 1, busy: false,
  loop: null, stats: {}, fps: 0, minScore: Number(query.get('min_score') || 0.3)};

function status(text, error = false) {
  $('status').textContent = text;
  $('status').className = error ? 'error' : '';
}

async function initRuntime() {
  const asked = Number(query.get('threads') || 0); // 0: up to 4, as the machine allows
  const threads = asked !== 1 && self.crossOriginIsolated && await supportsFeature('threads').catch(() => false);
  await loadLiteRt('/node_modules/@litertjs/core/wasm/', {threads});
  state.threads = threads ? (asked || Math.min(navigator.hardwareConcurrency || 1, 4)) : 1;
}

let adapter;
/** Whether the browser has a WebGPU adapter (headless chromium without a GPU has none). */
async function hasWebGpu() {
  if (adapter === undefined) adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  return Boolean(adapter) && await Promise.resolve(isWebGPUSupported()).catch(() => false);
}

/** Compile `url` on WebGPU when asked for and present, else WASM; returns [model, accelerator]. */
export async function compile(url) {
  const wanted = query.get('accelerator') || 'auto';
  if (wanted !== 'wasm' && await hasWebGpu()) {
    try {
      return [await loadAndCompile(url, {accelerator: 'webgpu'}), 'webgpu'];
    } catch (err) {
      console.warn(`WebGPU failed for ${url}, falling back to WASM:`, err);
    }
  }
  const options = {accelerator: 'wasm'};
  if (state.threads > 1) options.cpuOptions = {numThreads: state.threads};
  return [await loadAndCompile(url, options), 'wasm'];
}

async function loadModel(name) {
  const base = `/models/${encodeURIComponent(name)}/`;
  const meta = await (await fetch(base + 'metadata.json')).json();
  status(`compiling ${name} ...`);
  const [model, accelerator] = await compile(base + meta.artifact);
  if (state.model) state.model.delete();
  Object.assign(state, {model, meta, name, accelerator, stats: {}, fps: 0});
  const [, h, w] = meta.input.shape;
  $('backend').textContent = `${name}: ${meta.quantization}, ${w}x${h} ${meta.input.dtype} in, ${accelerator}` +
    (accelerator === 'wasm' ? `, ${state.threads} thread${state.threads > 1 ? 's' : ''}` : '') +
    `; tasks: ${Object.entries(meta.tasks).map(([n, t]) => `${n} (${t.type || n})`).join(', ')}`;
  status('ready: choose the camera, a video or an image');
}

/** Read an output tensor into a typed array (from the GPU when it lives there). */
async function read(tensor) {
  if (tensor.accelerator === 'wasm') return tensor.toTypedArray().slice();
  const local = await tensor.moveTo('wasm');
  const data = local.toTypedArray().slice();
  local.delete();
  return data;
}

const scratch = document.createElement('canvas');

/** The source (image, video, bitmap) resized to the model input: uint8 RGB [H * W * 3]. */
function toPixels(source, width, height) {
  scratch.width = width;
  scratch.height = height;
  const ctx = scratch.getContext('2d', {willReadFrequently: true});
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < rgba.length; p += 4, q += 3) {
    rgb[q] = rgba[p]; rgb[q + 1] = rgba[p + 1]; rgb[q + 2] = rgba[p + 2];
  }
  return rgb;
}

/** The model's outputs {name: {data, shape}} on uint8 RGB `pixels` (model-sized). */
async function run(pixels) {
  const {model, meta} = state;
  const input = new Tensor(quantizeInput(pixels, meta.input), meta.input.shape);
  const out = await model.run({[model.getInputDetails()[0].name]: input});
  input.delete();
  const outputs = {};
  for (const [name, tensor] of Object.entries(out)) {
    outputs[name] = {data: await read(tensor), shape: Array.from(tensor.type.layout.dimensions)};
    tensor.delete();
  }
  return outputs;
}

/** One frame through the model: {pixels, results, times (ms per stage)}. */
export async function infer(source) {
  const [, h, w] = state.meta.input.shape;
  const t0 = performance.now();
  const pixels = toPixels(source, w, h);
  const t1 = performance.now();
  const outputs = await run(pixels);
  const t2 = performance.now();
  const results = analyse(state.meta, outputs);
  const t3 = performance.now();
  return {pixels, results, times: {pre: t1 - t0, model: t2 - t1, decode: t3 - t2}};
}

function smooth(times) {
  for (const [k, v] of Object.entries(times)) state.stats[k] = state.stats[k] === undefined ? v : 0.9 * state.stats[k] + 0.1 * v;
}

function showStats() {
  const s = state.stats;
  $('stats').textContent = `${state.fps.toFixed(1)} FPS | pre ${s.pre.toFixed(1)} ms, model ${s.model.toFixed(1)} ms, ` +
    `decode ${s.decode.toFixed(1)} ms, draw ${(s.draw || 0).toFixed(1)} ms (${state.accelerator})`;
}

/** Run and draw one frame of `source`; returns infer()'s record. */
async function frame(source) {
  const started = performance.now();
  const record = await infer(source);
  const t = performance.now();
  drawResults($('view'), source, record.results, state.meta, state.minScore);
  record.times.draw = performance.now() - t;
  const elapsed = performance.now() - started;
  state.fps = state.fps ? 0.9 * state.fps + 0.1 * 1000 / elapsed : 1000 / elapsed;
  smooth(record.times);
  showStats();
  return record;
}

function stop() {
  if (state.loop) state.loop.cancelled = true;
  state.loop = null;
  const video = $('video');
  if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
}

function runLoop(video) {
  const loop = {cancelled: false};
  state.loop = loop;
  const step = async () => {
    if (loop.cancelled) return;
    if (video.readyState >= 2 && !video.paused) await frame(video).catch((err) => status(String(err), true));
    if (!loop.cancelled) requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

async function startCamera() {
  stop();
  if (!navigator.mediaDevices?.getUserMedia) {
    status('no camera API: the page needs https or localhost (see the README, Browser demo)', true);
    return;
  }
  const video = $('video');
  video.srcObject = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'environment'}, audio: false});
  await video.play();
  runLoop(video);
}

function loadImage(url) {
  return fetch(url).then((r) => r.blob()).then((blob) =>
    createImageBitmap(blob, {colorSpaceConversion: 'none', premultiplyAlpha: 'none'}));
}

async function openFile(file) {
  stop();
  const url = URL.createObjectURL(file);
  if (file.type.startsWith('video/')) {
    const video = $('video');
    video.src = url;
    video.loop = true;
    await video.play();
    runLoop(video);
  } else {
    await frame(await loadImage(url));
  }
}

/** The seeked frame `time` (s) of a video `url`, as a bitmap. */
async function videoFrame(url, time) {
  const video = document.createElement('video');
  video.muted = true;
  video.src = url;
  await new Promise((ok, fail) => { video.onloadeddata = ok; video.onerror = () => fail(new Error(`cannot play ${url}`)); });
  if (time > 0 || video.currentTime !== time) {
    const seeked = new Promise((ok) => { video.onseeked = ok; });
    video.currentTime = time;
    await seeked;
  }
  for (let i = 0; ; i++) { // the seeked frame may take a moment to be decoded
    try {
      return await createImageBitmap(video);
    } catch (err) {
      if (i >= 100) throw err;
      await new Promise((ok) => setTimeout(ok, 20));
    }
  }
}

function plain(record) {
  const tasks = {};
  for (const [task, r] of Object.entries(record.results)) {
    tasks[task] = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, ArrayBuffer.isView(v) ? Array.from(v) : v]));
  }
  return {input: Array.from(record.pixels), tasks, times: record.times};
}

async function main() {
  const models = await (await fetch('/models.json')).json();
  const select = $('model');
  for (const m of models.models) {
    const option = new Option(m.loadable ? m.name : `${m.name} (${m.reason})`, m.name);
    option.disabled = !m.loadable;
    select.add(option);
  }
  await initRuntime();
  const first = query.get('model') || models.models.find((m) => m.loadable)?.name;
  if (!first) throw new Error('no artifact of this export can run in LiteRT.js (export with --web for int8)');
  select.value = first;
  await loadModel(first);
  select.onchange = () => { stop(); loadModel(select.value).catch((err) => status(String(err), true)); };
  $('camera').onclick = () => startCamera().catch((err) => status(`camera: ${err.message}`, true));
  $('file').onchange = (e) => e.target.files[0] && openFile(e.target.files[0]).catch((err) => status(String(err), true));
  $('stop').onclick = stop;
  if (query.get('bench')) {
    $('bench').hidden = false;
    const runs = Number(query.get('runs') || 30);
    runBench(compile, $('bench-table'), {runs, warmup: Number(query.get('warmup') || 3),
      threads: state.threads}, status).then((result) => { window.mtlDemo.benchResult = result; })
      .catch((err) => status(`bench: ${err.message || err}`, true)); // not awaited: the page is ready meanwhile
  }
}

// The test hook: plain arrays a test (or a console) can compare with the Python Predictor.
window.mtlDemo = {
  ready: null,
  info: () => ({model: state.name, accelerator: state.accelerator, threads: state.threads,
    crossOriginIsolated: self.crossOriginIsolated, webgpu: Boolean(adapter), meta: state.meta}),
  setModel: (name) => loadModel(name).then(() => { $('model').value = name; return window.mtlDemo.info(); }),
  /** Run (and draw) the image at `url`: {input: fed RGB pixels, tasks: {task: result}, times}. */
  runOnImage: async (url) => plain(await frame(await loadImage(url))),
  /** The same on the frame at `time` seconds of the video at `url`. */
  runOnVideo: async (url, time = 0) => plain(await frame(await videoFrame(url, time))),
  /** The raw outputs {name: {data, shape}} (plain arrays) on the image at `url`. */
  rawOutputs: async (url) => {
    const [, h, w] = state.meta.input.shape;
    const outputs = await run(toPixels(await loadImage(url), w, h));
    return Object.fromEntries(Object.entries(outputs).map(([n, o]) => [n, {data: Array.from(o.data), shape: o.shape}]));
  },
  bench: (options) => runBench(compile, $('bench-table'), {threads: state.threads, ...options}, status),
};
window.mtlDemo.ready = main().then(() => window.mtlDemo.info()).catch((err) => {
  status(String(err.message || err), true);
  throw err;
});
