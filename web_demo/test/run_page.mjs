// Drive the demo page in headless Debian chromium (puppeteer-core) and write what it decoded.
//
//   node web_demo/test/run_page.mjs --url http://127.0.0.1:8000/ --models float32,web_int8 \
//        --image scene.png --video clip.webm --video-time 0.2 --screenshot shot.png --out result.json
//   node web_demo/test/run_page.mjs --url 'http://127.0.0.1:8000/?bench=1&runs=30' --bench --out bench.json
//
// Per model: runOnImage and runOnVideo results (fed pixels, per-task results, stage times).
// The video also goes through the page's file input, as a user would open it.
import {readFileSync, writeFileSync} from 'node:fs';
import {extname} from 'node:path';
import puppeteer from 'puppeteer-core';

function parse(argv) {
  const args = {chromium: process.env.CHROMIUM || '/usr/bin/chromium', timeout: 120000};
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-(.)/g, (_, c) => c.toUpperCase());
    args[key] = argv[i + 1] === undefined || argv[i + 1].startsWith('--') ? true : argv[++i];
  }
  return args;
}

const TYPES = {'.png': 'image/png', '.jpg': 'image/jpeg', '.webm': 'video/webm', '.mp4': 'video/mp4'};
const dataUrl = (path) => `data:${TYPES[extname(path)] || 'application/octet-stream'};base64,${readFileSync(path).toString('base64')}`;

const args = parse(process.argv.slice(2));
const browser = await puppeteer.launch({
  executablePath: args.chromium, headless: true, protocolTimeout: Number(args.timeout) + 60000,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--autoplay-policy=no-user-gesture-required'],
});
const result = {console: [], models: {}};
let page;
try {
  page = await browser.newPage();
  page.setDefaultTimeout(Number(args.timeout));
  await page.setViewport({width: 900, height: 700});
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));
  await page.goto(args.url, {waitUntil: 'load'});
  result.info = await page.evaluate(() => window.mtlDemo.ready.then((info) => ({...info, meta: undefined})));
  if (args.bench) {
    await page.waitForFunction(() => window.mtlDemo.benchResult, {timeout: Number(args.timeout)});
    result.bench = await page.evaluate(() => window.mtlDemo.benchResult);
  }
  for (const name of args.models ? String(args.models).split(',') : []) {
    const info = await page.evaluate((n) => window.mtlDemo.setModel(n).then((i) => ({...i, meta: undefined})), name);
    const entry = {info};
    if (args.image) entry.image = await page.evaluate((u) => window.mtlDemo.runOnImage(u), dataUrl(args.image));
    if (args.video) {
      entry.video = await page.evaluate((u, t) => window.mtlDemo.runOnVideo(u, t), dataUrl(args.video), Number(args.videoTime || 0));
    }
    result.models[name] = entry;
  }
  if (args.video) { // the user's path: open the video with the file input, let it play a few frames
    const input = await page.$('#file');
    await input.uploadFile(args.video);
    await page.waitForFunction(() => /FPS/.test(document.getElementById('stats').textContent));
    result.played = await page.evaluate(() => document.getElementById('stats').textContent);
    await page.evaluate(() => document.getElementById('stop').click());
  }
  if (args.image && args.screenshot) await page.evaluate((u) => window.mtlDemo.runOnImage(u), dataUrl(args.image));
  if (args.screenshot) await page.screenshot({path: args.screenshot});
  result.status = await page.evaluate(() => document.getElementById('status').textContent);
} catch (err) {
  result.error = String(err.stack || err);
  result.status = await page?.evaluate(() => document.getElementById('status').textContent).catch(() => undefined);
} finally {
  await browser.close();
}
const text = JSON.stringify(result);
if (args.out) writeFileSync(args.out, text); else process.stdout.write(text);
process.exit(result.error ? 1 : 0);
