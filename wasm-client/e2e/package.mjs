// The npm package in a fresh app: $APP_DIST (built by Vite from the packed tarball, see
// vite-app/) served by a plain static server, run in headless Debian Chromium against s2s-bridge
// and a real NiFi. Started by `cargo xtask wasm test`; writes $OUT_DIR/package.json with the
// records the app wrote, which the xtask then finds in NiFi's queue.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`package: environment variable ${name} is required`);
  return v;
};
const BRIDGE_BIN = env('BRIDGE_BIN');
const PORT = env('BRIDGE_PORT');
const DIST = env('APP_DIST');
const NIFI_URL = env('NIFI_URL');
const PORT_NAME = env('NIFI_PORT_PACKAGE');
const OUT_DIR = env('OUT_DIR');
const N = Number(process.env.RECORDS ?? 20);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
fs.mkdirSync(OUT_DIR, { recursive: true });

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
const server = http.createServer((req, res) => {
  const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
  const file = path.join(DIST, path.normalize(rel));
  if (!file.startsWith(DIST) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const ORIGIN = `http://127.0.0.1:${server.address().port}`;

const log = fs.createWriteStream(path.join(OUT_DIR, 'package-bridge.log'), { flags: 'a' });
const bridge = spawn(BRIDGE_BIN, ['--listen', `127.0.0.1:${PORT}`, '--nifi-url', NIFI_URL, '--port-name', PORT_NAME, '--allowed-origin', ORIGIN], { stdio: ['ignore', 'pipe', 'pipe'] });
bridge.stdout.pipe(log, { end: false });
bridge.stderr.pipe(log, { end: false });
let exited = null;
bridge.on('exit', (code, sig) => { exited = `exit ${code ?? sig}`; });
for (const deadline = Date.now() + 30000; ;) {
  if (exited) throw new Error(`bridge exited during startup (${exited})`);
  try {
    if ((await fetch(`http://127.0.0.1:${PORT}/healthz`)).ok) break;
  } catch { /* not yet */ }
  if (Date.now() > deadline) throw new Error('bridge did not answer /healthz within 30 s');
  await sleep(100);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const report = { ok: false };
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => { errors.push(String(e)); console.error('[page error]', e); });
  page.on('console', (m) => { if (m.type() === 'error') console.error('[page console]', m.text()); });
  const wasmRequests = [];
  page.on('request', (r) => { if (r.url().endsWith('.wasm')) wasmRequests.push(r.url()); });
  await page.goto(`${ORIGIN}/?n=${N}&bridge=${encodeURIComponent(`ws://127.0.0.1:${PORT}/v1/ws`)}`);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 90000 });
  const r = await page.evaluate(() => window.result);
  assert.equal(r.error, undefined, `the app failed: ${r.error}`);
  assert.equal(r.records.length, N);
  assert.equal(r.depth, 0, 'outbox empty after flush');
  assert.deepEqual(r.failure && [r.failure.isError, r.failure.name], [true, 'ConstraintError'], `a failed add rejects with an Error: ${JSON.stringify(r.failure)}`);
  assert.match(r.failure.message, /add failed: ConstraintError/);
  assert.equal(r.aborted, 'aborted on purpose', 'an abort the app asked for resolves');
  assert.equal(wasmRequests.length, 1, `the wasm module was loaded from the bundle: ${wasmRequests}`);
  assert.deepEqual(errors, [], 'no uncaught errors on the page');
  report.records = r.records;
  report.clientId = r.clientId;
  report.ok = true;
  console.log(`[package] the Vite-built app wrote and flushed ${N} records (wasm from ${new URL(wasmRequests[0]).pathname})`);
} finally {
  fs.writeFileSync(path.join(OUT_DIR, 'package.json'), JSON.stringify(report, null, 1));
  await browser.close().catch(() => {});
  bridge.kill('SIGTERM');
  await Promise.race([once(bridge, 'exit'), sleep(3000)]);
    bridge.kill('SIGKILL');
  server.close();
}
