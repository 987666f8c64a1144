// Benchmark mode (`?bench=1`): the multitask model against the single-task models it replaces,
// timed round-robin (multitask, task 1, task 2, multitask, ...) in one page, so load on the
// machine hits every contender alike. The naive set runs the single-task models one after the
// other: its time per round is their sum.
import {Tensor} from '@litertjs/core';

const TYPED = {uint8: Uint8Array, int8: Int8Array, float32: Float32Array, int32: Int32Array};

/** p-th percentile (0..100, linear interpolation) of `values`. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * p / 100, lo = Math.floor(at), hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

async function timeOnce(model, input) {
  const started = performance.now();
  const out = await model.run([input]);
  // reading every output back is part of the cost an app pays
  for (const t of Object.values(out)) {
    const local = t.accelerator === 'wasm' ? t : await t.moveTo('wasm');
    local.toTypedArray();
    if (local !== t) local.delete();
    t.delete();
  }
  return performance.now() - started;
}

/** Time the bench models listed by /bench.json; fills `table` and returns the figures. */
export async function runBench(compile, table, {runs = 30, warmup = 3, threads = 1} = {}, status = () => {}) {
  const list = await (await fetch('/bench.json')).json();
  if (!list.multitask) throw new Error(list.error || 'no bench models: start mtl-tf demo with --bench BENCH_DIR');
  const names = ['multitask', ...Object.keys(list.single)];
  const urls = {multitask: list.multitask, ...list.single};
  const models = {}, inputs = {};
  let accelerator;
  for (const name of names) {
    status(`bench: compiling ${name} ...`);
    [models[name], accelerator] = await compile(urls[name]);
    const detail = models[name].getInputDetails()[0];
    const size = detail.shape.reduce((a, b) => a * b, 1);
    const data = new (TYPED[detail.dtype] || Uint8Array)(size);
    for (let i = 0; i < size; i++) data[i] = (i * 37) % 251; // a fixed pseudo-image
    inputs[name] = new Tensor(data, Array.from(detail.shape));
  }
  const times = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < warmup + runs; round++) {
    status(`bench: round ${round + 1} of ${warmup + runs}`);
    for (const name of names) {
      const ms = await timeOnce(models[name], inputs[name]);
      if (round >= warmup) times[name].push(ms);
    }
  }
  const singles = Object.keys(list.single);
  times.naive = times.multitask.map((_, i) => singles.reduce((sum, n) => sum + times[n][i], 0));
  const rows = Object.fromEntries(Object.entries(times).map(([n, t]) => [n, {p50: percentile(t, 50), p90: percentile(t, 90)}]));
  const result = {accelerator, threads: accelerator === 'wasm' ? threads : null, runs, warmup, models: urls, rows,
    ratio_p50: rows.naive.p50 / rows.multitask.p50, ratio_p90: rows.naive.p90 / rows.multitask.p90,
    userAgent: navigator.userAgent, hardwareConcurrency: navigator.hardwareConcurrency};
  for (const name of names) { models[name].delete(); inputs[name].delete(); }
  table.innerHTML = '<tr><th>model</th><th>p50 ms</th><th>p90 ms</th></tr>' +
    Object.entries(rows).map(([n, r]) => `<tr><td>${n}${n === 'naive' ? ` (${singles.join(' + ')})` : ''}</td>` +
      `<td>${r.p50.toFixed(2)}</td><td>${r.p90.toFixed(2)}</td></tr>`).join('') +
    `<tr><td>naive / multitask</td><td>${result.ratio_p50.toFixed(2)}x</td><td>${result.ratio_p90.toFixed(2)}x</td></tr>`;
  status(`bench done: ${runs} rounds, ${accelerator}${result.threads ? `, ${threads} threads` : ''}; ` +
    `naive / multitask ${result.ratio_p50.toFixed(2)}x (p50)`);
  return result;
}
