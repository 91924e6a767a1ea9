// P4 of `cargo xtask bench` (issue 7): one headless Chromium tab → s2s-wasm → s2s-bridge → NiFi.
//
// Started by `cargo xtask bench` (xtask/src/bench.rs) with a release bridge binary, the built demo
// folder and a fresh NiFi input port; writes $OUT_FILE (JSON) for `s2s-bench run --p4-json`.
//
// Measured, for each uploader window (`maxInFlight`; 1 = the old one-batch-at-a-time uploader):
// * upload: N records already committed to the outbox (written with no bridge configured), then
//   the client is reopened with the bridge and timed until the outbox is empty, i.e. until the
//   bridge acked the last batch after NiFi's commit (ack = "nifi");
// * write: the same N records written in transactions of 500, no upload (IndexedDB alone);
// * latency: paced writes (a transaction of LAT_BATCH records every LAT_TICK_MS) while uploading;
//   per record, from the moment its transaction's commit resolved to the moment the `delivered`
//   event for its seq arrived (sent by the uploader after the bridge's ack, which the bridge sends
//   after NiFi committed the S2S transaction, i.e. when the FlowFile is in NiFi's queue);
// * instrument: writes/s of an unmodified plain-IndexedDB app, uninstrumented vs instrument()ed.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { once } from 'node:events';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`bench: environment variable ${name} is required`);
  return v;
};
const BRIDGE_BIN = env('BRIDGE_BIN');
const PORT = env('BRIDGE_PORT');
const STATIC_DIR = env('STATIC_DIR');
const NIFI_URL = env('NIFI_URL');
const NIFI_PORT = env('NIFI_PORT');
const OUT_FILE = env('OUT_FILE');
const N = Number(process.env.RECORDS ?? 8000);
const REPS = Number(process.env.REPS ?? 2);
const WINDOWS = JSON.parse(process.env.WINDOWS ?? '[1, 4]');
const BATCH = Number(process.env.BATCH ?? 1000);
const LAT_SECS = Number(process.env.LAT_SECS ?? 5);
const LAT_BATCH = Number(process.env.LAT_BATCH ?? 10);
const LAT_TICK_MS = Number(process.env.LAT_TICK_MS ?? 20);
// For experiments: PARTS=instrument (comma-separated: upload, latency, instrument) runs only those.
const PARTS = new Set((process.env.PARTS ?? 'upload,latency,instrument').split(','));
const BASE = `http://127.0.0.1:${PORT}`;
const WS = `ws://127.0.0.1:${PORT}/v1/ws`;
const started = Date.now();
const log = (msg) => console.error(`[p4 +${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

const bridgeLog = fs.createWriteStream(`${OUT_FILE}.bridge.log`, { flags: 'w' });
const bridge = spawn(BRIDGE_BIN, ['--listen', `127.0.0.1:${PORT}`, '--static', STATIC_DIR,
  '--nifi-url', NIFI_URL, '--port-name', NIFI_PORT, '--ack', 'nifi'], { stdio: ['ignore', 'pipe', 'pipe'] });
bridge.stdout.pipe(bridgeLog, { end: false });
bridge.stderr.pipe(bridgeLog, { end: false });
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${BASE}/healthz`)).ok) break;
  } catch { /* not yet listening */ }
  if (i > 200) throw new Error('the bridge did not come up');
  await new Promise((r) => setTimeout(r, 100));
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const out = { records: N, reps: REPS, windows: WINDOWS, runs: [], latency: [] };
try {
  const page = await (await browser.newContext()).newPage();
  page.on('console', (m) => { if (m.type() === 'error') log(`page: ${m.text()}`); });
  await page.goto(`${BASE}/index.html?db=p4-unused`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });

  let run = 0;
  for (let rep = 0; rep < (PARTS.has('upload') ? REPS : 0); rep++) {
    // Alternate the order of the windows rep by rep, like the other scenarios.
    const order = rep % 2 === 0 ? WINDOWS : [...WINDOWS].reverse();
    for (const window of order) {
      run++;
      const r = await page.evaluate(async ({ n, ws, window, db, batch }) => {
        const { open } = await import('./pkg/index.js');
        const schema = { version: 1, stores: { items: { keyPath: 'id' } } };
        const record = (j) => ({ id: j, name: `item ${j}`, qty: j % 17, tags: ['bench', 'wasm'], note: 'x'.repeat(64) });
        // Capture only: the writes alone.
        const w = await open(db, { schema });
        const t0 = performance.now();
        for (let i = 0; i < n; i += 500) {
          await w.transaction(['items'], (tx) => {
            for (let j = i; j < Math.min(n, i + 500); j++) tx.put('items', record(j));
          });
        }
        const writeSecs = (performance.now() - t0) / 1000;
        await w.close();
        // Upload what is in the outbox.
        const t1 = performance.now();
        const c = await open(db, { schema, bridgeUrl: ws, batchSize: batch, maxInFlight: window });
        let delivered = 0;
        let errors = 0;
        let lastAck = 0;
        c.onStatus((e) => {
          if (e.type === 'delivered' && e.source === 'local') {
            delivered += e.count;
            lastAck = performance.now();
          }
          if (e.type === 'error') errors++;
        });
        await c.flush({ timeoutMs: 300000 });
        // Timed to the last delivered event, not to flush()'s polling of the outbox.
        const uploadSecs = (lastAck - t1) / 1000;
        await c.close();
        return { writeSecs, uploadSecs, delivered, errors };
      }, { n: N, ws: WS, window, db: `p4-${run}`, batch: BATCH });
      if (r.delivered !== N) throw new Error(`window ${window}: ${r.delivered} of ${N} records delivered`);
      const row = { window, rep, ...r, uploadPerSec: N / r.uploadSecs, writePerSec: N / r.writeSecs };
      out.runs.push(row);
      log(`window ${window}: upload ${Math.round(row.uploadPerSec)} records/s, writes alone ${Math.round(row.writePerSec)} records/s, ${r.errors} error events`);
    }
  }

  for (const window of PARTS.has('latency') ? WINDOWS : []) {
    run++;
    const lat = await page.evaluate(async ({ ws, window, db, secs, batch, tick }) => {
      const { open } = await import('./pkg/index.js');
      const schema = { version: 1, stores: { items: { keyPath: 'id' } } };
      const c = await open(db, { schema, bridgeUrl: ws, batchSize: 1000, maxInFlight: window });
      let firstSeq = null;
      const deliveredAt = []; // [seqFrom, seqTo, t]
      c.onStatus((e) => {
        if (e.source !== 'local') return;
        if (e.type === 'inflight' && firstSeq === null) firstSeq = e.seqFrom;
        if (e.type === 'delivered') deliveredAt.push([e.seqFrom, e.seqTo, performance.now()]);
      });
      const committedAt = []; // per record index
      const t0 = performance.now();
      let next = t0;
      let j = 0;
      while (performance.now() - t0 < secs * 1000) {
        await c.transaction(['items'], (tx) => {
          for (let k = 0; k < batch; k++) tx.put('items', { id: j + k, v: 'x'.repeat(64) });
        });
        const t = performance.now();
        for (let k = 0; k < batch; k++) committedAt.push(t);
        j += batch;
        next += tick;
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
      const offered = j / ((performance.now() - t0) / 1000);
      await c.flush({ timeoutMs: 120000 });
      // flush() resolves once the outbox is empty; the uploader emits `delivered` for the last
      // batch just after deleting it: wait for that event before closing the client.
      const lastSeq = firstSeq + j - 1;
      for (let t = 0; t < 200 && !deliveredAt.some(([, b]) => b >= lastSeq); t++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await c.close();
      // This tab is the only writer of a fresh database, so record i has seq firstSeq + i.
      const lat = committedAt.map((t, i) => {
        const seq = firstSeq + i;
        const d = deliveredAt.find(([a, b]) => seq >= a && seq <= b);
        return d ? d[2] - t : null;
      });
      return { n: j, offered, missing: lat.filter((x) => x === null).length, lat: lat.filter((x) => x !== null) };
    }, { ws: WS, window, db: `p4-lat-${run}`, secs: LAT_SECS, batch: LAT_BATCH, tick: LAT_TICK_MS });
    if (lat.missing) throw new Error(`latency run: ${lat.missing} records without a delivered event`);
    const sorted = lat.lat.sort((a, b) => a - b);
    const q = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
    const row = { window, records: lat.n, offeredPerSec: lat.offered, p50: q(0.5), p99: q(0.99), max: sorted[sorted.length - 1] };
    out.latency.push(row);
    log(`latency, window ${window}: ${lat.n} records at ${Math.round(lat.offered)}/s: p50 ${row.p50.toFixed(1)} ms, p99 ${row.p99.toFixed(1)} ms`);
  }
  // The cost of instrument(): the same unmodified plain-IndexedDB app (N puts in transactions of
  // 500) uninstrumented and under instrument() (capture only: no bridge, so no upload competes),
  // each in a fresh document of this tab's origin so no patched prototype survives; the order
  // alternates rep by rep. The instrumented run must leave exactly N rows in the outbox.
  out.instrument = [];
  const appWrites = async (instrumented, db) => {
    await page.goto(`${BASE}/healthz`);
    return page.evaluate(async ({ n, db, instrumented, base }) => {
      const inst = instrumented
        ? await (await import(`${base}/pkg/index.js`)).instrument({ databases: { [db]: { stores: ['items'] } } })
        : null;
      const idb = await new Promise((resolve, reject) => {
        const req = indexedDB.open(db, 1);
        req.onupgradeneeded = () => req.result.createObjectStore('items', { keyPath: 'id' });
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      const record = (j) => ({ id: j, name: `item ${j}`, qty: j % 17, tags: ['bench', 'wasm'], note: 'x'.repeat(64) });
      const t0 = performance.now();
      for (let i = 0; i < n; i += 500) {
        await new Promise((resolve, reject) => {
          const tx = idb.transaction('items', 'readwrite');
          const store = tx.objectStore('items');
          for (let j = i; j < Math.min(n, i + 500); j++) store.put(record(j));
          tx.oncomplete = resolve;
          tx.onabort = () => reject(tx.error);
        });
      }
      const secs = (performance.now() - t0) / 1000;
      const captured = inst ? await (await inst.client(db)).depth() : null;
      idb.close();
      if (inst) inst.uninstall();
      return { secs, captured };
    }, { n: N, db, instrumented, base: BASE });
  };
  for (let rep = 0; rep < (PARTS.has('instrument') ? REPS : 0); rep++) {
    run++;
    const order = rep % 2 === 0 ? [false, true] : [true, false];
    const r = {};
    for (const instrumented of order) {
      const x = await appWrites(instrumented, `p4-app-${run}-${instrumented ? 'inst' : 'plain'}`);
      if (instrumented && x.captured !== N) throw new Error(`instrument(): ${x.captured} of ${N} writes in the outbox`);
      r[instrumented ? 'instrumentedPerSec' : 'plainPerSec'] = N / x.secs;
    }
    out.instrument.push({ rep, ...r });
    log(`instrument(): plain app ${Math.round(r.plainPerSec)} writes/s, instrumented ${Math.round(r.instrumentedPerSec)} writes/s (${((1 - r.instrumentedPerSec / r.plainPerSec) * 100).toFixed(1)} % slower)`);
  }

  out.total = out.runs.length * N + out.latency.reduce((a, r) => a + r.records, 0);
  out.ok = true;
} finally {
  await browser.close();
  bridge.kill();
  await once(bridge, 'exit').catch(() => {});
  fs.writeFileSync(OUT_FILE, JSON.stringify(out, null, 1));
}
log(`wrote ${OUT_FILE}`);
