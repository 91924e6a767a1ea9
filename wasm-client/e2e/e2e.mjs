// End-to-end run of the s2s-wasm client in headless Debian Chromium (playwright-core):
// page → bridge (s2s-bridge, started and stopped here) → real NiFi. The demo page is driven
// through its controls (typing a title + Enter, the checkbox, ✕, Clear all, Add 100, Flush), as a
// user would; the test only reads the page (its DOM and its IndexedDB) to know what NiFi must hold.
//
// Started by `cargo xtask wasm test`, which provisions the NiFi input ports beforehand and, after
// this script exits 0, checks every FlowFile in NiFi's queues against $OUT_DIR/expected.json.
// This script asserts what only the browser can see (offline writes, the single uploader, status
// events) and records what NiFi must hold.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`e2e: environment variable ${name} is required`);
  return v;
};
const BRIDGE_BIN = env('BRIDGE_BIN');
const PORT = env('BRIDGE_PORT');
const STATIC_DIR = env('STATIC_DIR');
const NIFI_URL = env('NIFI_URL');
const PORT_MAIN = env('NIFI_PORT_MAIN');
const PORT_BENCH = env('NIFI_PORT_BENCH');
const PORT_BULK = env('NIFI_PORT_BULK');
const OUT_DIR = env('OUT_DIR');
const BENCH = Number(process.env.BENCH_RECORDS ?? 5000);
const BRIDGE_EXTRA = JSON.parse(process.env.BRIDGE_ARGS ?? '[]');
const BASE = `http://127.0.0.1:${PORT}`;
const started = Date.now();

fs.mkdirSync(OUT_DIR, { recursive: true });

// A second origin serving the same files, for the page that must reload while the bridge (which
// serves the demo) is down: as an app served by its own web server would be.
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.ts': 'text/plain' };
const appServer = http.createServer((req, res) => {
  const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
  const file = path.join(STATIC_DIR, path.normalize(rel));
  if (!file.startsWith(STATIC_DIR) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
appServer.listen(0, '127.0.0.1');
await once(appServer, 'listening');
const APP_ORIGIN = `http://127.0.0.1:${appServer.address().port}`;
const bridgeLog = fs.createWriteStream(path.join(OUT_DIR, 'bridge.log'), { flags: 'a' });
const step = (msg) => console.log(`[e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function startBridge(portName) {
  const args = ['--listen', `127.0.0.1:${PORT}`, '--static', STATIC_DIR, '--nifi-url', NIFI_URL,
    '--port-name', portName, '--allowed-origin', APP_ORIGIN, ...BRIDGE_EXTRA];
  bridgeLog.write(`\n=== ${new Date().toISOString()} ${BRIDGE_BIN} ${args.join(' ')}\n`);
  const proc = spawn(BRIDGE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.pipe(bridgeLog, { end: false });
  proc.stderr.pipe(bridgeLog, { end: false });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = `exit ${code ?? sig}`; });
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exited) throw new Error(`bridge exited during startup (${exited}); see ${OUT_DIR}/bridge.log`);
    try {
      const r = await fetch(`${BASE}/healthz`);
      if (r.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error('bridge did not answer /healthz within 30 s');
    await sleep(100);
  }
  step(`bridge up on ${BASE} → NiFi port ${portName}`);
  return proc;
}

async function stopBridge(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 15000);
  await once(proc, 'exit');
  clearTimeout(timer);
  step('bridge stopped');
}

async function openDemo(context, query = '', origin = BASE) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('[page error]', e));
  page.on('console', (m) => { if (m.type() === 'error') console.error('[page console]', m.text()); });
  await page.goto(`${origin}/${query}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  // Record every status event this tab sees.
  await page.evaluate(() => {
    window.__events = [];
    window.demo.client.onStatus((e) => window.__events.push(e));
  });
  return page;
}

// The page's `todos` records, read straight from its IndexedDB (the browser's truth).
async function readTodos(page, db) {
  return page.evaluate((db) => new Promise((resolve, reject) => {
    const req = indexedDB.open(db);
    req.onerror = () => reject(req.error);
    req.onsuccess = () => {
      const d = req.result;
      const get = d.transaction('todos').objectStore('todos').getAll();
      get.onsuccess = () => { d.close(); resolve(get.result); };
      get.onerror = () => { d.close(); reject(get.error); };
    };
  }), db);
}

const listHas = (page, title) => page.waitForFunction(
  (t) => [...document.querySelectorAll('#list li span')].some((s) => s.textContent === t), title, { timeout: 30000 });

// Types each title into the form and presses Enter (one `add` each); returns the stored records.
async function typeTodos(page, db, titles) {
  for (const title of titles) {
    await page.fill('#title', title);
    await page.press('#title', 'Enter');
    await listHas(page, title);
  }
  const want = new Set(titles);
  const got = (await readTodos(page, db)).filter((t) => want.has(t.title));
  assert.equal(got.length, titles.length, 'every typed title is one record');
  return got;
}

// Ticks a to-do's checkbox (one `put`); returns the stored record.
async function toggleTodo(page, db, id) {
  await page.click(`#list li[data-id="${id}"] input[type=checkbox]`);
  await page.waitForSelector(`#list li.done[data-id="${id}"]`, { timeout: 30000 });
  return (await readTodos(page, db)).find((t) => t.id === id);
}

// Clicks a to-do's ✕ (one `delete`).
async function deleteTodo(page, id) {
  await page.click(`#list li[data-id="${id}"] button`);
  await page.waitForSelector(`#list li[data-id="${id}"]`, { state: 'detached', timeout: 30000 });
}

// Clicks Flush until the page reports everything delivered (the button's flush waits 15 s, a
// restarted bridge may need more); then the page's outbox depth reads 0.
async function clickFlush(page, attempts = 6) {
  for (let i = 1; ; i++) {
    await page.click('#flush');
    await page.waitForSelector('#flush[data-result]', { timeout: 60000 });
    const result = await page.getAttribute('#flush', 'data-result');
    if (result === 'delivered') break;
    if (i >= attempts) throw new Error(`Flush did not deliver: ${result}`);
    step(`flush attempt ${i}: ${result}; again`);
  }
  await page.waitForFunction(() => document.getElementById('depth').textContent === '0', null, { timeout: 30000 });
}

const depthShows = (page, n) => page.waitForFunction((n) => document.getElementById('depth').textContent === String(n), n, { timeout: 30000 });

const expected = []; // {database, store, key, op, app, json?|base64?, mime}
const todoRecord = (t, op = 'add') => ({
  database: 'todo-demo', store: 'todos', key: op === 'clear' ? '' : String(t.id), op,
  json: op === 'delete' || op === 'clear' ? null : t, mime: 'application/json',
});
const titles = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix} ${i + 1}`);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let bridge = await startBridge(PORT_MAIN);
const report = { ok: false };
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });

  // ---- A: online writes through the demo's controls, plus binary records in a second database.
  step('A: typing, ticking and deleting to-dos');
  const page1 = await openDemo(context);
  const clientId = await page1.evaluate(() => window.demo.client.clientId);
  assert.match(await page1.textContent('#mirror'), /not configured/, 'no mirror endpoint: the page says so');
  const a = await typeTodos(page1, 'todo-demo', titles('online', 6));
  a.forEach((t) => expected.push(todoRecord(t)));
  const updated = await toggleTodo(page1, 'todo-demo', a[0].id);
  assert.equal(updated.done, true, 'the checkbox stored done: true');
  expected.push(todoRecord(updated, 'put'));
  await deleteTodo(page1, a[1].id);
  expected.push(todoRecord({ id: a[1].id }, 'delete'));
  const bytes = Array.from({ length: 300 }, (_, i) => (i * 7) % 256);
  const files = await page1.evaluate(async ({ bytes, bridgeUrl }) => {
    const { open } = await import('./pkg/index.js');
    const files = await open('e2e-files', { schema: { version: 1, stores: { files: {} } }, bridgeUrl, attributes: { 'app.name': 'todo-demo' } });
    window.files = files;
    await files.transaction(['files'], async (tx) => {
      await tx.put('files', new Uint8Array(bytes), 'raw-1');
      await tx.put('files', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), 'blob-1');
    });
    await files.flush({ timeoutMs: 60000 });
    return { clientId: files.clientId };
  }, { bytes, bridgeUrl: `ws://127.0.0.1:${PORT}/v1/ws` });
  const b64 = Buffer.from(bytes).toString('base64');
  expected.push({ database: 'e2e-files', store: 'files', key: 'raw-1', op: 'put', base64: b64, mime: 'application/octet-stream' });
  expected.push({ database: 'e2e-files', store: 'files', key: 'blob-1', op: 'put', base64: b64, mime: 'image/png' });
  await clickFlush(page1);
  assert.ok(await page1.evaluate(() => window.demo.client.isUploader), 'the only tab is the uploader');

  // ---- B: bridge down → writes keep working offline → reload → bridge up → everything arrives.
  // This page comes from its own origin (a separate IndexedDB): it must reload while the bridge,
  // which serves the demo, is down.
  step('B: bridge down, offline writes');
  const offline = 'offline-demo';
  const pageB = await openDemo(context, `?db=${offline}&bridge=ws://127.0.0.1:${PORT}/v1/ws`, APP_ORIGIN);
  const offlineClientId = await pageB.evaluate(() => window.demo.client.clientId);
  await stopBridge(bridge);
  const b = await typeTodos(pageB, offline, titles('offline', 15));
  b.forEach((t) => expected.push({ ...todoRecord(t), database: offline }));
  await depthShows(pageB, 15); // offline writes wait in the outbox
  await pageB.waitForFunction(() => window.__events.some((e) => e.type === 'error' && !e.fatal), null, { timeout: 30000 });
  step('B: uploader reported the outage; reloading the page');
  await pageB.reload();
  await pageB.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  await pageB.evaluate(() => { window.__events = []; window.demo.client.onStatus((e) => window.__events.push(e)); });
  await depthShows(pageB, 15); // the outbox survives a reload
  assert.equal(await pageB.evaluate(() => window.demo.client.clientId), offlineClientId, 'client id survives a reload');
  step('B: outbox intact after reload; restarting the bridge');
  bridge = await startBridge(PORT_MAIN);
  await clickFlush(pageB);
  await pageB.close();
  step('B: offline writes delivered');

  // ---- C: two tabs write concurrently; exactly one uploads; the other takes over on close.
  step('C: two tabs');
  const page2 = await openDemo(context);
  const roles = [await page1.evaluate(() => window.demo.client.isUploader), await page2.evaluate(() => window.demo.client.isUploader)];
  assert.deepEqual(roles, [true, false], 'one uploader per origin (the first tab keeps the lock)');
  const [c1, c2] = await Promise.all([typeTodos(page1, 'todo-demo', titles('tab1', 20)), typeTodos(page2, 'todo-demo', titles('tab2', 20))]);
  [...c1, ...c2].forEach((t) => expected.push(todoRecord(t)));
  await clickFlush(page2);
  const inflight2 = await page2.evaluate(() => window.__events.filter((e) => e.type === 'inflight' && e.source === 'local').length);
  assert.equal(inflight2, 0, 'the second tab never uploaded while the first held the lock');
  const remote2 = await page2.evaluate(() => window.__events.filter((e) => e.type === 'delivered' && e.source === 'remote').length);
  assert.ok(remote2 > 0, 'the second tab saw the uploader\'s delivery events');
  await page1.close();
  await page2.waitForFunction(() => window.demo.client.isUploader, null, { timeout: 30000 });
  const c3 = await typeTodos(page2, 'todo-demo', titles('after failover', 5));
  c3.forEach((t) => expected.push(todoRecord(t)));
  await clickFlush(page2);
  assert.ok(await page2.evaluate(() => window.__events.some((e) => e.type === 'inflight' && e.source === 'local')), 'the second tab uploads after the first closed');
  await sleep(300);
  const shot = path.join(OUT_DIR, 'demo.png');
  await page2.screenshot({ path: shot });
  step(`C: screenshot ${shot}`);
  step('C: Clear all');
  await page2.click('#clear');
  await page2.waitForFunction(() => document.querySelectorAll('#list li').length === 0, null, { timeout: 30000 });
  assert.equal((await readTodos(page2, 'todo-demo')).length, 0, 'Clear all emptied the store');
  expected.push(todoRecord({}, 'clear'));
  await clickFlush(page2);
  report.main = { port: PORT_MAIN, clientIds: { 'todo-demo': clientId, 'e2e-files': files.clientId, [offline]: offlineClientId }, records: expected };

  // ---- Add 100: one transaction of 100 adds, into its own port (NiFi lists at most 100 FlowFiles).
  step('Add 100');
  await stopBridge(bridge);
  bridge = await startBridge(PORT_BULK);
  await page2.click('#bulk');
  await page2.waitForFunction(() => document.querySelectorAll('#list li').length === 100, null, { timeout: 60000 });
  await clickFlush(page2);
  const bulk = await readTodos(page2, 'todo-demo');
  assert.equal(bulk.length, 100, 'Add 100 stored 100 records');
  report.bulk = { port: PORT_BULK, clientIds: { 'todo-demo': clientId }, records: bulk.map((t) => todoRecord(t)) };
  await page2.close();

  // ---- D: throughput from one tab to NiFi (its own port, count-checked by the xtask).
  step(`D: throughput, ${BENCH} records`);
  await stopBridge(bridge);
  bridge = await startBridge(PORT_BENCH);
  const page3 = await context.newPage();
  await page3.goto(`${BASE}/index.html?db=bench-unused`);
  await page3.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  const bench = await page3.evaluate(async ({ n, bridgeUrl }) => {
    const { open } = await import('./pkg/index.js');
    const c = await open('bench', { schema: { version: 1, stores: { items: { keyPath: 'id' } } }, bridgeUrl, batchSize: 1000 });
    let firstSent = 0;
    let lastDelivered = 0;
    c.onStatus((e) => {
      if (e.type === 'inflight' && !firstSent) firstSent = performance.now();
      if (e.type === 'delivered') lastDelivered = performance.now();
    });
    const t0 = performance.now();
    const chunk = 500;
    for (let i = 0; i < n; i += chunk) {
      await c.transaction(['items'], (tx) => {
        for (let j = i; j < Math.min(n, i + chunk); j++) {
          tx.put('items', { id: j, name: `item ${j}`, qty: j % 17, tags: ['bench', 'wasm'], note: 'x'.repeat(64) });
        }
      });
    }
    const written = performance.now();
    await c.flush({ timeoutMs: 300000 });
    const done = performance.now();
    return { n, writeSecs: (written - t0) / 1000, totalSecs: (done - t0) / 1000, deliverSecs: (lastDelivered - firstSent) / 1000 };
  }, { n: BENCH, bridgeUrl: `ws://127.0.0.1:${PORT}/v1/ws` });
  bench.recordsPerSec = Math.round(bench.n / bench.totalSecs);
  bench.writesPerSec = Math.round(bench.n / bench.writeSecs);
  report.bench = { port: PORT_BENCH, ...bench };
  step(`D: ${bench.n} records: write ${bench.writeSecs.toFixed(2)}s, end-to-end ${bench.totalSecs.toFixed(2)}s → ${bench.recordsPerSec} records/s to NiFi`);
  report.ok = true;
} finally {
  await stopBridge(bridge).catch(() => {});
  await browser.close();
  appServer.close();
  fs.writeFileSync(path.join(OUT_DIR, 'expected.json'), JSON.stringify(report, null, 1));
}
step('browser side passed');
