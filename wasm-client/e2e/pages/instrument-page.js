// The instrumented "apps": each function below is ordinary app code written against plain
// IndexedDB, `idb` or Dexie, with no reference to s2s-wasm. instrument.mjs calls them after
// `instrument()` and then checks the outbox against what IndexedDB holds.
import { openDB } from 'idb';
import Dexie from 'dexie';
import { instrument } from 's2s-wasm';

const req = (r) => new Promise((resolve, reject) => {
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});
const done = (tx) => new Promise((resolve, reject) => {
  tx.oncomplete = () => resolve('complete');
  tx.onabort = () => resolve('abort');
  tx.onerror = () => {};
  void reject;
});

// A database that existed before the app was instrumented (no __s2s_ stores): created raw, before
// instrument() is called.
window.createLegacy = async () => {
  const open = indexedDB.open('inst-legacy', 3);
  open.onupgradeneeded = () => open.result.createObjectStore('things');
  const db = await req(open);
  const tx = db.transaction('things', 'readwrite');
  tx.objectStore('things').put({ old: true }, 'before');
  await done(tx);
  db.close();
};

window.setup = async (bridgeUrl) => {
  window.inst = await instrument({
    databases: {
      'inst-plain': { stores: ['items', 'notes'] },
      'inst-idb': {},
      'inst-dexie': { stores: ['friends'] },
      'inst-legacy': {},
    },
    bridgeUrl,
    attributes: { 'app.name': 'instrument-test' },
  });
};

// Plain IndexedDB. Returns what the app observed (versions, tx outcomes).
window.plainApp = async () => {
  const seen = {};
  const open = indexedDB.open('inst-plain', 1);
  open.onupgradeneeded = (e) => {
    seen.upgrade = [e.oldVersion, e.newVersion];
    const db = open.result;
    db.createObjectStore('items', { keyPath: 'id', autoIncrement: true });
    db.createObjectStore('notes');
    db.createObjectStore('cache');
    // A write inside the app's own upgrade is captured too.
    open.transaction.objectStore('notes').put('seeded', 'seed');
  };
  const db = await req(open);
  seen.version = db.version;
  seen.storeNames = Array.from(db.objectStoreNames);

  let tx = db.transaction(['items', 'notes', 'cache'], 'readwrite');
  seen.txStoreNames = Array.from(tx.objectStoreNames);
  tx.objectStore('items').add({ title: 'a' });
  tx.objectStore('items').add({ title: 'b' });
  tx.objectStore('notes').put('hello', 'n1');
  tx.objectStore('cache').put({ x: 1 }, 'c1'); // not a watched store
  seen.tx1 = await done(tx);

  // Aborted by the app: nothing written, no outbox row.
  tx = db.transaction('items', 'readwrite');
  tx.objectStore('items').put({ id: 50, title: 'never' });
  tx.abort();
  seen.tx2 = await done(tx);

  // A failed add aborts the transaction (no row for the put before it either).
  tx = db.transaction('items', 'readwrite');
  tx.objectStore('items').put({ id: 51, title: 'never either' });
  tx.objectStore('items').add({ id: 1, title: 'duplicate' });
  seen.tx3 = await done(tx);

  // A failed add whose error the app handles: the transaction goes on; only the put is captured.
  tx = db.transaction('items', 'readwrite');
  const dup = tx.objectStore('items').add({ id: 1, title: 'duplicate' });
  dup.onerror = (e) => e.preventDefault();
  tx.objectStore('items').put({ id: 3, title: 'c' });
  seen.tx4 = await done(tx);

  // Cursor update and delete.
  tx = db.transaction('items', 'readwrite');
  const cur = tx.objectStore('items').openCursor();
  cur.onsuccess = () => {
    const c = cur.result;
    if (!c) return;
    if (c.key === 1) c.update({ ...c.value, done: true });
    if (c.key === 2) c.delete();
    c.continue();
  };
  seen.tx5 = await done(tx);

  // Delete by key range: one delete row per key the range held.
  tx = db.transaction('notes', 'readwrite');
  const notes = tx.objectStore('notes');
  notes.put('v2', 'n2');
  notes.put('v3', 'n3');
  notes.delete(IDBKeyRange.bound('n2', 'n3'));
  seen.tx6 = await done(tx);

  // A multi-store transaction ending in clear.
  tx = db.transaction(['items', 'notes'], 'readwrite');
  tx.objectStore('items').put({ id: 7, title: 'seven' });
  tx.objectStore('notes').clear();
  tx.objectStore('notes').put('after clear', 'n9');
  seen.tx7 = await done(tx);
  db.close();
  return seen;
};

// The `idb` library.
window.idbApp = async () => {
  const db = await openDB('inst-idb', 1, {
    upgrade(d) { d.createObjectStore('kv'); d.createObjectStore('auto', { keyPath: 'id', autoIncrement: true }); },
  });
  await db.put('kv', { v: 1 }, 'k1');
  await db.add('auto', { name: 'x' });
  const tx = db.transaction(['kv', 'auto'], 'readwrite');
  await tx.objectStore('kv').add({ v: 2 }, 'k2');
  await tx.objectStore('kv').delete('k1');
  await tx.objectStore('auto').put({ id: 1, name: 'x2' });
  await tx.done;
  let failed = null;
  try {
    await db.add('kv', { v: 3 }, 'k2'); // ConstraintError
  } catch (e) {
    failed = e.name;
  }
  let cursor = await db.transaction('kv', 'readwrite').store.openCursor();
  while (cursor) {
    await cursor.update({ ...cursor.value, touched: true });
    cursor = await cursor.continue();
  }
  const version = db.version;
  db.close();
  return { failed, version };
};

// Dexie.
window.dexieApp = async () => {
  const db = new Dexie('inst-dexie');
  db.version(1).stores({ friends: '++id, name', other: 'k' });
  await db.friends.add({ name: 'ann' });
  await db.friends.bulkAdd([{ name: 'bob' }, { name: 'cy' }]);
  await db.friends.update(1, { age: 3 });
  await db.friends.where('name').equals('bob').delete();
  await db.transaction('rw', db.friends, db.other, async () => {
    await db.friends.put({ id: 10, name: 'dee' });
    await db.other.put({ k: 'o1' }); // not watched
  });
  let failed = null;
  try {
    await db.transaction('rw', db.friends, async () => {
      await db.friends.put({ id: 11, name: 'never' });
      throw new Error('app error');
    });
  } catch (e) {
    failed = e.message;
  }
  const verno = db.verno;
  const tables = db.tables.map((t) => t.name).sort();
  db.close();
  return { failed, verno, tables };
};

// The pre-existing database: opened at the app's version, then upgraded by the app.
window.legacyApp = async () => {
  const seen = {};
  let open = indexedDB.open('inst-legacy', 3);
  let db = await req(open);
  seen.version = db.version;
  const tx = db.transaction('things', 'readwrite');
  tx.objectStore('things').put({ n: 1 }, 'after');
  seen.tx = await done(tx);
  db.close();
  open = indexedDB.open('inst-legacy', 4);
  open.onupgradeneeded = (e) => {
    seen.upgrade = [e.oldVersion, e.newVersion];
    open.result.createObjectStore('more');
  };
  db = await req(open);
  seen.version2 = db.version;
  seen.storeNames = Array.from(db.objectStoreNames).sort();
  const tx2 = db.transaction(['things', 'more'], 'readwrite');
  tx2.objectStore('more').put('m', 'm1');
  seen.tx2 = await done(tx2);
  db.close();
  return seen;
};

// What the outbox says vs what IndexedDB holds: replaying the rows (in seq order) on empty stores
// must give exactly the stores' contents. Read through a raw connection.
window.check = async (name, stores) => {
  const client = await window.inst.client(name);
  const rows = await client.pending(10000);
  const db = client.db;
  const out = { rows: rows.map((r) => ({ seq: r.seq, store: r.store, key: r.key, op: r.op, value: r.value })), mismatches: [] };
  const replay = new Map(stores.map((s) => [s, new Map()]));
  for (const r of rows) {
    const m = replay.get(r.store);
    if (!m) { out.mismatches.push(`row for unwatched store ${r.store}`); continue; }
    if (r.op === 'clear') m.clear();
    else if (r.op === 'delete') m.delete(JSON.stringify(r.key));
    else m.set(JSON.stringify(r.key), JSON.stringify(r.value));
  }
  for (const s of stores) {
    const tx = db.transaction(s);
    const keys = await req(tx.objectStore(s).getAllKeys());
    const values = await req(tx.objectStore(s).getAll());
    const actual = new Map(keys.map((k, i) => [JSON.stringify(k), JSON.stringify(values[i])]));
    const expected = replay.get(s);
    for (const [k, v] of actual) if (expected.get(k) !== v) out.mismatches.push(`${name}/${s} ${k}: idb ${v}, replay ${expected.get(k)}`);
    for (const k of expected.keys()) if (!actual.has(k)) out.mismatches.push(`${name}/${s} ${k}: in replay only`);
  }
  out.clientId = client.clientId;
  const ffs = await client.pendingFlowFiles(10000);
  out.flowfiles = ffs.map((f) => ({ attributes: f.attributes, content: btoa(String.fromCharCode(...f.content)) }));
  return out;
};

window.flushAll = async (names) => {
  const res = {};
  for (const n of names) {
    const c = await window.inst.client(n);
    await c.flush({ timeoutMs: 60000 });
    res[n] = await c.depth();
  }
  return res;
};
