// End-to-end run of the s2s-wasm client in headless Debian Chromium (playwright-core):
// page → bridge (s2s-bridge, started and stopped here) → real NiFi.
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

// Writes `todos` (objects without id) one transaction each; returns them with their keys.
async function addTodos(page, todos) {
  return page.evaluate(async (todos) => {
    const { client, render } = window.demo;
    const out = [];
    for (const t of todos) out.push({ ...t, id: await client.add('todos', t) });
    await render();
    return out;
  }, todos);
}

const expected = []; // {database, store, key, op, app, json?|base64?, mime}
const todoRecord = (t, op = 'add') => ({
  database: 'todo-demo', store: 'todos', key: String(t.id), op, json: op === 'delete' ? null : t, mime: 'application/json',
});
const makeTodos = (prefix, n) => Array.from({ length: n }, (_, i) => ({ title: `${prefix} ${i + 1}`, done: false, created: started + i }));

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
let bridge = await startBridge(PORT_MAIN);
const report = { ok: false };
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 860 } });

  // ---- A: online writes through the demo's client, plus binary records in a second database.
  step('A: online writes');
  const page1 = await openDemo(context);
  const clientId = await page1.evaluate(() => window.demo.client.clientId);
  const a = await addTodos(page1, makeTodos('online', 10));
  a.forEach((t) => expected.push(todoRecord(t)));
  const updated = { ...a[0], done: true };
  await page1.evaluate((t) => window.demo.client.put('todos', t), updated);
  expected.push(todoRecord(updated, 'put'));
  await page1.evaluate((id) => window.demo.client.delete('todos', id), a[1].id);
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
  await page1.evaluate(() => window.demo.client.flush({ timeoutMs: 60000 }));
  assert.equal(await page1.evaluate(() => window.demo.client.depth()), 0, 'outbox empty after flush');
  assert.ok(await page1.evaluate(() => window.demo.client.isUploader), 'the only tab is the uploader');

  // ---- B: bridge down → writes keep working offline → reload → bridge up → everything arrives.
  // This page comes from its own origin (a separate IndexedDB): it must reload while the bridge,
  // which serves the demo, is down.
  step('B: bridge down, offline writes');
  const offline = 'offline-demo';
  const pageB = await openDemo(context, `?db=${offline}&bridge=ws://127.0.0.1:${PORT}/v1/ws`, APP_ORIGIN);
  const offlineClientId = await pageB.evaluate(() => window.demo.client.clientId);
  await stopBridge(bridge);
  const b = await addTodos(pageB, makeTodos('offline', 15));
  b.forEach((t) => expected.push({ ...todoRecord(t), database: offline }));
  assert.equal(await pageB.evaluate(() => window.demo.client.depth()), 15, 'offline writes wait in the outbox');
  await pageB.waitForFunction(() => window.__events.some((e) => e.type === 'error' && !e.fatal), null, { timeout: 30000 });
  step('B: uploader reported the outage; reloading the page');
  await pageB.reload();
  await pageB.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  await pageB.evaluate(() => { window.__events = []; window.demo.client.onStatus((e) => window.__events.push(e)); });
  assert.equal(await pageB.evaluate(() => window.demo.client.depth()), 15, 'the outbox survives a reload');
  assert.equal(await pageB.evaluate(() => window.demo.client.clientId), offlineClientId, 'client id survives a reload');
  step('B: outbox intact after reload; restarting the bridge');
  bridge = await startBridge(PORT_MAIN);
  await pageB.evaluate(() => window.demo.client.flush({ timeoutMs: 90000 }));
  assert.equal(await pageB.evaluate(() => window.demo.client.depth()), 0);
  await pageB.close();
  step('B: offline writes delivered');

  // ---- C: two tabs write concurrently; exactly one uploads; the other takes over on close.
  step('C: two tabs');
  const page2 = await openDemo(context);
  const roles = [await page1.evaluate(() => window.demo.client.isUploader), await page2.evaluate(() => window.demo.client.isUploader)];
  assert.deepEqual(roles, [true, false], 'one uploader per origin (the first tab keeps the lock)');
  const [c1, c2] = await Promise.all([addTodos(page1, makeTodos('tab1', 20)), addTodos(page2, makeTodos('tab2', 20))]);
  [...c1, ...c2].forEach((t) => expected.push(todoRecord(t)));
  await page2.evaluate(() => window.demo.client.flush({ timeoutMs: 60000 }));
  const inflight2 = await page2.evaluate(() => window.__events.filter((e) => e.type === 'inflight' && e.source === 'local').length);
  assert.equal(inflight2, 0, 'the second tab never uploaded while the first held the lock');
  const remote2 = await page2.evaluate(() => window.__events.filter((e) => e.type === 'delivered' && e.source === 'remote').length);
  assert.ok(remote2 > 0, 'the second tab saw the uploader\'s delivery events');
  await page1.close();
  await page2.waitForFunction(() => window.demo.client.isUploader, null, { timeout: 30000 });
  const c3 = await addTodos(page2, makeTodos('after-failover', 5));
  c3.forEach((t) => expected.push(todoRecord(t)));
  await page2.evaluate(() => window.demo.client.flush({ timeoutMs: 60000 }));
  assert.ok(await page2.evaluate(() => window.__events.some((e) => e.type === 'inflight' && e.source === 'local')), 'the second tab uploads after the first closed');
  await page2.evaluate(() => window.demo.render());
  await sleep(300);
  const shot = path.join(OUT_DIR, 'demo.png');
  await page2.screenshot({ path: shot, fullPage: true });
  step(`C: screenshot ${shot}`);
  await page2.close();
  report.main = { port: PORT_MAIN, clientIds: { 'todo-demo': clientId, 'e2e-files': files.clientId, [offline]: offlineClientId }, records: expected };

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
