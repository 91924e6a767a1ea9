// The IndexedDB → NiFi → PostgreSQL mirror, end to end in headless Debian Chromium (playwright-core):
// two tabs of one origin write a random history (puts, adds, deletes, clears, multi-store
// transactions, binary records) through the s2s-wasm client, with an offline period (bridge
// stopped), a reload, the bridge SIGKILLed while batches are in flight, and forced re-sends (outbox
// rows already delivered put back, so the same FlowFiles, same idb.seq, go to NiFi again). At the
// end both tabs flush, and the browser's IndexedDB contents are written to $OUT_DIR/mirror.json:
// the xtask (`cargo xtask wasm mirror`) then compares them with the PostgreSQL mirror that the
// deployed flow tests/flows/idb-mirror.json keeps.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`mirror: environment variable ${name} is required`);
  return v;
};
const BRIDGE_BIN = env('BRIDGE_BIN');
const PORT = env('BRIDGE_PORT');
const STATIC_DIR = env('STATIC_DIR');
const NIFI_URL = env('NIFI_URL');
const NIFI_PORT = env('NIFI_PORT');
const OUT_DIR = env('OUT_DIR');
const SEED = Number(process.env.MIRROR_SEED ?? Date.now() % 1000000);
const OPS = Number(process.env.MIRROR_OPS ?? 300);
const MODE = process.env.MIRROR_MODE ?? 'client'; // 'client' (explicit API) | 'instrument'
const BASE = `http://127.0.0.1:${PORT}`;
const WS = `ws://127.0.0.1:${PORT}/v1/ws`;
const DB = `mirror-${MODE}`;
const started = Date.now();
fs.mkdirSync(OUT_DIR, { recursive: true });
// The app's own web server (the page must reload while the bridge is down).
const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
const appServer = http.createServer((req, res) => {
  const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
  const root = path.resolve(STATIC_DIR);
  const file = path.join(root, path.normalize(rel));
  if (!file.startsWith(root) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
appServer.listen(0, '127.0.0.1');
await once(appServer, 'listening');
const APP = `http://127.0.0.1:${appServer.address().port}`;
const bridgeLog = fs.createWriteStream(path.join(OUT_DIR, 'mirror-bridge.log'), { flags: 'a' });
const step = (msg) => console.log(`[mirror +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// mulberry32: the whole history follows from SEED (printed, MIRROR_SEED replays it).
let rngState = SEED >>> 0;
const rnd = () => {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rnd() * a.length)];

async function startBridge() {
  const args = ['--listen', `127.0.0.1:${PORT}`, '--static', STATIC_DIR, '--nifi-url', NIFI_URL, '--port-name', NIFI_PORT, '--allowed-origin', APP];
  bridgeLog.write(`\n=== ${new Date().toISOString()} ${BRIDGE_BIN} ${args.join(' ')}\n`);
  const proc = spawn(BRIDGE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout.pipe(bridgeLog, { end: false });
  proc.stderr.pipe(bridgeLog, { end: false });
  let exited = null;
  proc.on('exit', (code, sig) => { exited = `exit ${code ?? sig}`; });
  const deadline = Date.now() + 30000;
  for (;;) {
    if (exited) throw new Error(`bridge exited during startup (${exited}); see ${OUT_DIR}/mirror-bridge.log`);
    try {
      if ((await fetch(`${BASE}/healthz`)).ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error('bridge did not answer /healthz within 30 s');
    await sleep(100);
  }
  step(`bridge up → NiFi port ${NIFI_PORT}`);
  return proc;
}

async function stopBridge(proc, signal = 'SIGTERM') {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill(signal);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 15000);
  await once(proc, 'exit');
  clearTimeout(timer);
  step(`bridge stopped (${signal})`);
}

const SCHEMA = {
  version: 1,
  stores: {
    todos: { keyPath: 'id' },
    notes: {},
    counter: { keyPath: 'id', autoIncrement: true },
    files: {},
  },
};

// Opens the client in a tab (explicit API) and installs the helpers the test calls.
async function openTab(context) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('[page error]', e));
  await page.goto(`${APP}/index.html?db=${DB}-demo-unused&bridge=${encodeURIComponent(WS)}`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  await setupTab(page);
  return page;
}

async function setupTab(page) {
  await page.evaluate(async ({ db, schema, ws, mode }) => {
    const pkg = await import('./pkg/index.js');
    if (mode === 'instrument') {
      // An unmodified app: plain IndexedDB, its own schema, no reference to the client; captured
      // by instrument().
      window.inst = await pkg.instrument({ databases: { [db]: {} }, bridgeUrl: ws, attributes: { 'app.name': 'mirror-e2e' }, backoffCapMs: 2000 });
      window.appdb = await new Promise((resolve, reject) => {
        const open = indexedDB.open(db, 1);
        open.onupgradeneeded = () => {
          for (const [name, o] of Object.entries(schema.stores)) {
            open.result.createObjectStore(name, o.keyPath ? { keyPath: o.keyPath, autoIncrement: !!o.autoIncrement } : {});
          }
        };
        open.onsuccess = () => resolve(open.result);
        open.onerror = () => reject(open.error);
      });
      window.m = await window.inst.client(db);
    } else {
      window.m = await pkg.open(db, { schema, bridgeUrl: ws, attributes: { 'app.name': 'mirror-e2e' }, backoffCapMs: 2000 });
    }
    window.m.onStatus((e) => { if (e.type === 'delivered' && e.source === 'local') window.__delivered = (window.__delivered ?? 0) + e.count; });
    // The app's raw writes (instrument mode): all requests of one operation in one transaction.
    const rawOp = (op) => new Promise((resolve) => {
      const writes = op.t === 'tx' ? op.writes : [op];
      const tx = window.appdb.transaction([...new Set(writes.map((w) => w.store))], 'readwrite');
      let failure = null;
      for (const w of writes) {
        const os = tx.objectStore(w.store);
        let r;
        switch (w.t) {
          case 'put':
            if (w.store === 'todos') r = os.put({ ...w.value, id: w.key });
            else if (w.store === 'files') r = os.put(new Uint8Array(w.bytes), w.key);
            else r = os.put(w.value, w.key);
            break;
          case 'add': r = w.store === 'counter' ? os.add(w.value) : os.add(w.value, w.key); break;
          case 'delete': r = os.delete(w.key); break;
          case 'clear': r = os.clear(); break;
          default: throw new Error(`unknown write ${w.t}`);
        }
        r.onerror = () => { failure = failure ?? r.error?.name ?? 'Error'; };
      }
      tx.oncomplete = () => resolve('ok');
      tx.onabort = () => resolve(failure ?? 'AbortError');
    });
    const write = async (t, w) => {
      switch (w.t) {
        case 'put':
          if (w.store === 'todos') return t.put('todos', { ...w.value, id: w.key });
          if (w.store === 'files') return t.put('files', new Uint8Array(w.bytes), w.key);
          return t.put(w.store, w.value, w.key);
        case 'add':
          if (w.store === 'counter') return t.add('counter', w.value);
          return t.add(w.store, w.value, w.key);
        case 'delete': return t.delete(w.store, w.key);
        case 'clear': return t.clear(w.store);
        default: throw new Error(`unknown write ${w.t}`);
      }
    };
    // Runs one operation; resolves to 'ok' or the name of the error (a failed add aborts its
    // transaction: nothing written, no outbox row).
    window.__op = async (op) => {
      if (window.appdb) return rawOp(op);
      try {
        if (op.t === 'tx') {
          await window.m.transaction(op.stores, async (tx) => { for (const w of op.writes) await write(tx, w); });
        } else {
          await write(window.m, op);
        }
        return 'ok';
      } catch (e) {
        return String(e?.name ?? e?.target?.error?.name ?? e);
      }
    };
  }, { db: DB, schema: SCHEMA, ws: WS, mode: MODE });
}

const KEYS = ['k1', 'k2', 'k3', 'k4', 'k5', "it's ${key}", 'ü/ö', '[1,"a"]'];
const TEXTS = ['plain', "it's O'Brien's", 'quote " and \\ backslash', '${idb.seq} #{postgres.user} $1', 'ünïcødé ✓ 🚀', 'semi; -- comment', '?', ''];
const value = () => ({ title: pick(TEXTS), done: rnd() < 0.5, n: Math.floor(rnd() * 1e6), tags: Array.from({ length: Math.floor(rnd() * 3) }, (_, i) => `t${i}`), nested: { y: [1.5, null, { z: pick(TEXTS) }] } });
function randomWrite() {
  const r = rnd();
  if (r < 0.05) return { t: 'clear', store: pick(['todos', 'notes', 'counter', 'files']) };
  if (r < 0.22) return { t: 'delete', store: pick(['todos', 'notes']), key: pick(KEYS) };
  if (r < 0.32) return { t: 'put', store: 'files', key: `file-${Math.floor(rnd() * 4)}`, bytes: Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256)) };
  if (r < 0.42) return { t: 'add', store: 'counter', value: { count: Math.floor(rnd() * 1000) } };
  if (r < 0.48) return { t: 'add', store: 'notes', key: pick(KEYS), value: value() }; // fails if the key exists
  return { t: 'put', store: pick(['todos', 'notes']), key: pick(KEYS), value: value() };
}
function randomOp() {
  if (rnd() < 0.2) {
    const writes = Array.from({ length: 2 + Math.floor(rnd() * 3) }, randomWrite);
    return { t: 'tx', stores: [...new Set(writes.map((w) => w.store))], writes };
  }
  return randomWrite();
}

const counts = { ops: 0, writes: 0, transactions: 0, failed: 0, byType: {}, reloads: 0, bridgeKills: 0, offlineOps: 0, forcedResends: 0 };
async function runOps(tabs, n, label) {
  for (let i = 0; i < n; i++) {
    const op = randomOp();
    const tab = pick(tabs);
    const res = await tab.evaluate((op) => window.__op(op), op);
    counts.ops += 1;
    if (op.t === 'tx') counts.transactions += 1;
    for (const w of op.t === 'tx' ? op.writes : [op]) {
      counts.byType[w.t] = (counts.byType[w.t] ?? 0) + 1;
      counts.writes += 1;
    }
    if (res !== 'ok') counts.failed += 1;
  }
  step(`${label}: ${n} operations`);
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
let bridge = await startBridge();
const report = { ok: false, seed: SEED, mode: MODE, database: DB };
try {
  const context = await browser.newContext();
  const tab1 = await openTab(context);
  const tab2 = await openTab(context);
  const tabs = [tab1, tab2];
  const per = Math.max(10, Math.floor(OPS / 5));
  step(`seed ${SEED}, ${OPS} operations, database ${DB}`);

  // 1: online, both tabs.
  await runOps(tabs, per, 'online');

  // 2: offline (bridge stopped): writes go on, one tab reloads, its outbox survives.
  await stopBridge(bridge);
  await runOps(tabs, per, 'offline');
  counts.offlineOps += per;
  await tab2.reload();
  await tab2.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  await setupTab(tab2);
  counts.reloads += 1;
  await runOps(tabs, Math.floor(per / 2), 'offline after reload');
  counts.offlineOps += Math.floor(per / 2);

  // 3: forced re-sends: copy the rows waiting in the outbox; after they were delivered, put them
  // back with their own seq, so the uploader sends the same changes again.
  const copied = await tab1.evaluate(async () => {
    const db = window.m.db ?? window.appdb;
    const tx = db.transaction('__s2s_outbox', 'readonly');
    const os = tx.objectStore('__s2s_outbox');
    const [keys, rows] = await Promise.all([
      new Promise((res, rej) => { const r = os.getAllKeys(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); }),
      new Promise((res, rej) => { const r = os.getAll(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); }),
    ]);
    window.__copied = keys.map((k, i) => [k, rows[i]]);
    return keys.length;
  });
  step(`${copied} outbox rows copied for re-sending`);

  // 4: bridge back; kill it (SIGKILL) while batches are in flight, twice, then restart.
  bridge = await startBridge();
  for (let k = 0; k < 2; k++) {
    const writing = runOps(tabs, Math.floor(per / 2), `writing while the bridge dies (${k + 1})`);
    await sleep(150 + Math.floor(rnd() * 300));
    await stopBridge(bridge, 'SIGKILL');
    counts.bridgeKills += 1;
    await writing;
    bridge = await startBridge();
  }
  await tab1.evaluate(() => window.m.flush({ timeoutMs: 120000 }));
  const reinserted = await tab1.evaluate(async () => {
    const db = window.m.db ?? window.appdb;
    await new Promise((res, rej) => {
      const tx = db.transaction('__s2s_outbox', 'readwrite');
      const os = tx.objectStore('__s2s_outbox');
      for (const [k, row] of window.__copied) os.put(row, k);
      tx.oncomplete = res;
      tx.onerror = () => rej(tx.error);
    });
    window.m.notifyCommitted?.(window.__copied.length);
    return window.__copied.length;
  });
  counts.forcedResends += reinserted;
  step(`${reinserted} delivered rows put back into the outbox (forced re-sends)`);
  // The running uploader reads on after what it sent last; a new one starts at the oldest row.
  for (const t of tabs) {
    await t.reload();
    await t.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
    await setupTab(t);
    counts.reloads += 1;
  }

  // 5: more online writes, then everything delivered.
  await runOps(tabs, per, 'online again');
  for (const t of tabs) await t.evaluate(() => window.m.flush({ timeoutMs: 120000 }));
  for (const t of tabs) assert.equal(await t.evaluate(() => window.m.depth()), 0, 'outbox empty after flush');

  // The browser's IndexedDB, as the mirror represents it.
  const state = await tab1.evaluate(async (stores) => {
    const db = window.appdb ?? window.m.db;
    const keyText = (k) => (typeof k === 'string' ? k : JSON.stringify(k));
    const b64 = (bytes) => { let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); };
    const out = {};
    for (const store of stores) {
      const tx = db.transaction(store, 'readonly');
      const os = tx.objectStore(store);
      const [keys, vals] = await Promise.all([
        new Promise((res, rej) => { const r = os.getAllKeys(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); }),
        new Promise((res, rej) => { const r = os.getAll(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); }),
      ]);
      out[store] = {};
      keys.forEach((k, i) => {
        const v = vals[i];
        out[store][keyText(k)] = ArrayBuffer.isView(v) ? { $base64: b64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) } : JSON.parse(JSON.stringify(v));
      });
    }
    return { clientId: window.m.clientId, stores: out };
  }, Object.keys(SCHEMA.stores));
  const seqHigh = await tab1.evaluate(async () => {
    const db = window.m.db ?? window.appdb;
    return new Promise((res, rej) => {
      const r = db.transaction('__s2s_meta', 'readonly').objectStore('__s2s_meta').getAll();
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
  }).catch(() => null);
  report.clientId = state.clientId;
  report.stores = state.stores;
  report.counts = counts;
  report.meta = seqHigh;
  report.ok = true;
  const rows = Object.values(state.stores).reduce((n, s) => n + Object.keys(s).length, 0);
  step(`browser side done: ${rows} records in ${Object.keys(state.stores).length} stores; ${JSON.stringify(counts)}`);
} finally {
  await stopBridge(bridge).catch(() => {});
  await browser.close();
  appServer.close();
  fs.writeFileSync(path.join(OUT_DIR, `mirror-${MODE}.json`), JSON.stringify(report, null, 1));
}
