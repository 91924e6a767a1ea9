// instrument() in headless Debian Chromium: unmodified app code (plain IndexedDB, `idb`, Dexie from
// npm) on instrumented databases → outbox → s2s-bridge → real NiFi.
//
// Started by `cargo xtask wasm test` after e2e.mjs, with a NiFi input port of its own. Asserts in
// the browser what only it can see (the exact outbox rows of the plain-IndexedDB app, aborted and
// failed transactions leave none, the app sees its own versions and stores, replaying the outbox
// gives exactly each watched store's contents), writes $OUT_DIR/instrument.json with the FlowFiles
// the outbox rows map to; the xtask then checks NiFi's queue holds exactly those.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`instrument: environment variable ${name} is required`);
  return v;
};
const HERE = path.dirname(fileURLToPath(import.meta.url));
const BRIDGE_BIN = env('BRIDGE_BIN');
const PORT = env('BRIDGE_PORT');
const STATIC_DIR = env('STATIC_DIR');
const NIFI_URL = env('NIFI_URL');
const PORT_NAME = env('NIFI_PORT_INSTRUMENT');
const OUT_DIR = env('OUT_DIR');
const started = Date.now();
const step = (msg) => console.log(`[instrument +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
fs.mkdirSync(OUT_DIR, { recursive: true });

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
const roots = [
  ['/pkg/', path.join(STATIC_DIR, 'pkg')],
  ['/node_modules/', path.join(HERE, 'node_modules')],
  ['/test/', path.join(HERE, 'pages')],
];
const server = http.createServer((req, res) => {
  const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const root = roots.find(([prefix]) => p.startsWith(prefix));
  const file = root && path.join(root[1], path.normalize(p.slice(root[0].length)));
  if (!file || !file.startsWith(root[1]) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const ORIGIN = `http://127.0.0.1:${server.address().port}`;

// The bridge is started only after the outbox was checked: until then the rows stay put (the
// apps run "offline"), so the check sees all of them; flush() then delivers them.
let bridge = null;
async function startBridge() {
  const bridgeLog = fs.createWriteStream(path.join(OUT_DIR, 'instrument-bridge.log'), { flags: 'a' });
  const args = ['--listen', `127.0.0.1:${PORT}`, '--nifi-url', NIFI_URL, '--port-name', PORT_NAME, '--allowed-origin', ORIGIN];
  bridge = spawn(BRIDGE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  bridge.stdout.pipe(bridgeLog, { end: false });
  bridge.stderr.pipe(bridgeLog, { end: false });
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
  step(`bridge up → NiFi port ${PORT_NAME}`);


}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const errors = [];
const report = { ok: false };
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => { errors.push(String(e)); console.error('[page error]', e); });
  page.on('console', (m) => { if (m.type() === 'error' || process.env.DEBUG) console.error('[page console]', m.text()); });
  await page.goto(`${ORIGIN}/test/instrument.html`);
  await page.waitForFunction(() => typeof window.setup === 'function');
  await page.evaluate(() => window.createLegacy());
  await page.evaluate((url) => window.setup(url), `ws://127.0.0.1:${PORT}/v1/ws`);
  step('instrumented');

  const plain = await page.evaluate(() => window.plainApp());
  assert.deepEqual(plain.upgrade, [0, 1], 'the app sees its own versions in the upgrade');
  assert.equal(plain.version, 1);
  assert.deepEqual(plain.storeNames.sort(), ['cache', 'items', 'notes'], 'the client stores are hidden from the app');
  assert.deepEqual(plain.txStoreNames.sort(), ['cache', 'items', 'notes']);
  assert.deepEqual([plain.tx1, plain.tx2, plain.tx3, plain.tx4, plain.tx5, plain.tx6, plain.tx7],
    ['complete', 'abort', 'abort', 'complete', 'complete', 'complete', 'complete']);
  const idbSeen = await page.evaluate(() => window.idbApp());
  assert.equal(idbSeen.failed, 'ConstraintError');
  assert.equal(idbSeen.version, 1);
  const dexieSeen = await page.evaluate(() => window.dexieApp());
  assert.equal(dexieSeen.failed, 'app error');
  assert.equal(dexieSeen.verno, 1, 'Dexie sees its own version');
  assert.deepEqual(dexieSeen.tables, ['friends', 'other'], 'Dexie sees only its tables');
  const legacy = await page.evaluate(() => window.legacyApp());
  assert.equal(legacy.version, 3, 'a pre-existing database keeps the app\'s version');
  assert.deepEqual(legacy.upgrade, [3, 4]);
  assert.equal(legacy.version2, 4);
  assert.deepEqual(legacy.storeNames, ['more', 'things']);
  step('apps ran');

  const checks = {};
  for (const [name, stores] of [['inst-plain', ['items', 'notes']], ['inst-idb', ['kv', 'auto']], ['inst-dexie', ['friends']], ['inst-legacy', ['more']]]) {
    checks[name] = await page.evaluate(([n, s]) => window.check(n, s), [name, stores]).catch((e) => {
      throw new Error(`checking ${name}: ${e.message}`);
    });
  }
  for (const [name, c] of Object.entries(checks)) {
    if (name !== 'inst-legacy') assert.deepEqual(c.mismatches, [], `${name}: replaying the outbox gives the stores' contents`);
  }
  const ops = (c) => c.rows.map((r) => `${r.store}:${r.op}:${JSON.stringify(r.key) ?? ''}`);
  assert.deepEqual(ops(checks['inst-plain']), [
    'notes:put:"seed"',
    'items:add:1', 'items:add:2', 'notes:put:"n1"',
    'items:put:3',
    'items:put:1', 'items:delete:2',
    'notes:put:"n2"', 'notes:put:"n3"', 'notes:delete:"n2"', 'notes:delete:"n3"',
    'items:put:7', 'notes:clear:', 'notes:put:"n9"',
  ], 'plain IndexedDB: exactly the committed writes, in order');
  assert.deepEqual(checks['inst-plain'].rows[1].value, { title: 'a', id: 1 }, 'a generated in-line key is on the captured record');
  assert.deepEqual(checks['inst-plain'].rows[5].value, { title: 'a', id: 1, done: true });
  assert.deepEqual(ops(checks['inst-legacy']), ['things:put:"after"', 'more:put:"m1"']);
  const dexieOps = ops(checks['inst-dexie']);
  assert.ok(dexieOps.includes('friends:put:10') && !dexieOps.some((o) => o.endsWith(':11')), `Dexie rows: ${dexieOps}`);
  step(`outbox rows as expected (${Object.values(checks).map((c) => c.rows.length).join(' + ')})`);

  await startBridge();
  const depths = await page.evaluate((names) => window.flushAll(names), Object.keys(checks));
  assert.deepEqual(Object.values(depths), [0, 0, 0, 0], `outboxes empty after flush: ${JSON.stringify(depths)}`);
  assert.deepEqual(errors, [], 'no uncaught errors on the page');
  step('flushed to NiFi');

  // A page from an origin the bridge does not allow (localhost vs 127.0.0.1): the client's error
  // says so (close code 4003 with the reason), instead of a bare "connection lost (1006)".
  const foreign = await browser.newPage();
  await foreign.goto(`${ORIGIN.replace('127.0.0.1', 'localhost')}/test/instrument.html`);
  await foreign.waitForFunction(() => typeof window.setup === 'function');
  const refusal = await foreign.evaluate(async (url) => {
    const { open } = await import('s2s-wasm');
    const client = await open('origin-test', { schema: { version: 1, stores: { s: {} } }, bridgeUrl: url, backoffBaseMs: 50 });
    const message = await new Promise((resolve) => {
      client.onStatus((e) => { if (e.type === 'error') resolve(e.message); });
      client.put('s', 1, 'k');
    });
    client.close();
    return message;
  }, `ws://127.0.0.1:${PORT}/v1/ws`);
  assert.match(refusal, /close code 4003: origin http:\/\/localhost:\d+ not allowed/, refusal);
  await foreign.close();
  step(`a foreign origin is told why: ${refusal}`);
  report.flowfiles = Object.values(checks).flatMap((c) => c.flowfiles);
  report.ok = true;
} finally {
  fs.writeFileSync(path.join(OUT_DIR, 'instrument.json'), JSON.stringify(report, null, 1));
  await browser.close().catch(() => {});
  if (bridge) {
    bridge.kill('SIGTERM');
    await Promise.race([once(bridge, 'exit'), sleep(3000)]);
    bridge.kill('SIGKILL');
  }
  server.close();
}
step(`done: ${report.flowfiles.length} FlowFiles expected in NiFi`);
