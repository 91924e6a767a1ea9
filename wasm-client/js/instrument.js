// s2s-wasm zero-code capture: `instrument()` patches IndexedDB's prototypes so that writes made by
// existing code (plain IndexedDB, `idb`, Dexie, ...) on the databases it is given are captured into
// the client's outbox in the SAME transaction as the write. See README "Zero-code capture".
//
// How (all of it here, in plain JS; the wasm core only reads the outbox, maps rows to FlowFiles
// and uploads them, on its own IndexedDB connection):
// * `IDBFactory.open` of an instrumented database: an `upgradeneeded` listener registered before
//   the app's handler creates the client's stores (`__s2s_outbox`, `__s2s_meta`, `__s2s_rejected`)
//   in the app's own upgrade transaction. A database that already exists without them is
//   upgraded once by `instrument()` (version + 1); the app's versions are then translated (it asks
//   for v, IndexedDB opens v + offset, and `db.version`, `oldVersion`, `newVersion` show the app's
//   numbers), so the bump is invisible to it.
// * `IDBDatabase.transaction`: a read-write transaction of the app over watched stores also
//   covers `__s2s_outbox` (hidden again from `objectStoreNames`, as the client's stores are from
//   the app's `db.objectStoreNames`).
// * `IDBObjectStore` `put`/`add`/`delete`/`clear` and `IDBCursor` `update`/`delete`: when the
//   data request succeeds (a listener registered before the app's), its change is collected; when
//   the last captured request pending in the transaction has settled, the changes collected so far
//   are written to the outbox as ONE row, in the same transaction, so a failed or aborted write
//   leaves no row. A request that fails contributes nothing. Writes the app issues later (e.g. from
//   its own success handler) form a further row. `delete(range)` reads the range's keys first and
//   records one delete per key.
// A change has the client's format `{s: store, k: key, o: op, t: epoch ms, v: value}`. A row of
// one change is that object (as rows written by the client itself); a row of n > 1 changes is
// `{b: [change, ...]}`. Rows are keyed by the outbox's key generator, and every change has its own
// `idb.seq`: a batch row stored at key K stands for seqs K..K+n-1. Those keys are reserved in the
// same transaction (`put` at K+n-1 advances the key generator past it, then that placeholder is
// deleted), so the keys K+1..K+n-1 stay free and the row is exactly equivalent to n single rows at
// K..K+n-1 (the core splits it when only part of it was delivered). A batch row also has an index
// entry, the array key `[K, n]` (array keys sort after all numbers), so `depth()` counts changes
// from keys alone.
// * `IDBTransaction.commit` of a captured transaction: while outbox requests are still to be
//   issued (from success events), the commit waits for them (IndexedDB forbids requests after
//   `commit()`); then it commits.

const OUTBOX = '__s2s_outbox';
const META = '__s2s_meta';
const REJECTED = '__s2s_rejected';
const INTERNAL = [OUTBOX, META, REJECTED];
const OFFSET_KEY = 'versionOffset';

/** Per database name: `{ stores: Set | null, offset, onCommit }`. */
const configs = new Map();
/** App connections (IDBDatabase) → database name. */
const appDbs = new WeakMap();
/** App open requests → database name. */
const appRequests = new WeakMap();
/** Transactions whose writes are captured → `{ name, cfg, rows }`. */
const captured = new WeakMap();

let originals = null;

function isInternal(name) {
  return typeof name === 'string' && name.startsWith('__s2s_');
}

function watched(cfg, store) {
  return !isInternal(store) && (cfg.stores === null || cfg.stores.has(store));
}

function filteredNames(list) {
  const names = Array.from(list).filter((n) => !isInternal(n));
  return Object.assign(names, {
    item(i) { return names[i] ?? null; },
    contains(n) { return names.includes(n); },
  });
}

function ensureInternalStores(db, tx) {
  const names = originals.dbStoreNames.call(db);
  if (!names.contains(OUTBOX)) db.createObjectStore(OUTBOX, { autoIncrement: true });
  for (const s of [META, REJECTED]) if (!names.contains(s)) db.createObjectStore(s);
  return tx;
}

function track(tx, name, cfg) {
  // rows: changes written to the outbox; pending: captured requests not settled yet; batch: the
  // changes collected since the last outbox row.
  // reserving: batch rows whose seqs are not reserved yet; commitAsked: the app called commit()
  // meanwhile (deferred until the outbox requests are issued, see `T.commit`).
  const info = { name, cfg, rows: 0, pending: 0, batch: [], reserving: 0, commitAsked: false };
  captured.set(tx, info);
  tx.addEventListener('complete', () => {
    if (info.rows > 0) cfg.onCommit?.(name, info.rows);
  });
  return info;
}

function inlineKeyValue(store, value, key) {
  // A generated in-line key is written into IndexedDB's copy only: put it on the captured copy
  // too (a shallow copy; the app's object is left alone), so the FlowFile carries it.
  const path = store.keyPath;
  if (!store.autoIncrement || typeof path !== 'string' || path === '' || path.includes('.')) {
    return value;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value) || value[path] !== undefined) {
    return value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) {
    return value;
  }
  return { ...value, [path]: key };
}

/** Aborts `tx`: a change that cannot be captured must not commit either. */
function abortCapture(tx, e) {
  console.error('s2s-wasm: could not capture a write; aborting its transaction', e);
  try { tx.abort(); } catch { /* already finished */ }
}

/**
 * Collects the changes of a data request from its success event (before the app's listeners run);
 * the outbox row is written once no captured request of the transaction is pending.
 */
function capture(info, tx, req, rowsOf) {
  info.pending += 1;
  req.addEventListener('success', () => {
    try {
      for (const r of rowsOf(req.result)) info.batch.push(r);
    } catch (e) {
      abortCapture(tx, e);
      return;
    }
    settled(info, tx);
  });
  // A failed request contributes no change (its error also reaches the transaction, which aborts
  // unless the app prevents that). When the whole transaction is aborting nothing is written.
  req.addEventListener('error', () => {
    if (req.error?.name === 'AbortError') {
      info.pending -= 1;
      return;
    }
    settled(info, tx);
  });
}

/** An outbox request failed: the transaction must not commit (unless it is aborting anyway). */
function outboxError(tx) {
  return (event) => {
    const error = event.target?.error;
    if (error?.name !== 'AbortError') abortCapture(tx, error ?? event);
  };
}

function settled(info, tx) {
  info.pending -= 1;
  if (info.pending > 0) return;
  const changes = info.batch;
  info.batch = [];
  try {
    if (changes.length === 1) {
      const outbox = originals.txObjectStore.call(tx, OUTBOX);
      originals.add.call(outbox, changes[0]).addEventListener('error', outboxError(tx));
      info.rows += 1;
    } else if (changes.length > 1) {
      const outbox = originals.txObjectStore.call(tx, OUTBOX);
      const n = changes.length;
      const req = originals.add.call(outbox, { b: changes });
      info.reserving += 1;
      info.rows += n;
      req.addEventListener('error', outboxError(tx));
      req.addEventListener('success', () => {
        info.reserving -= 1;
        try {
          const first = req.result;
          const last = first + n - 1;
          // Reserve seqs first+1..last: an explicit key advances the key generator past it.
          originals.put.call(outbox, 0, last).addEventListener('error', outboxError(tx));
          originals.delete.call(outbox, last).addEventListener('error', outboxError(tx));
          originals.put.call(outbox, 0, [first, n]).addEventListener('error', outboxError(tx));
        } catch (e) {
          abortCapture(tx, e);
          return;
        }
        deferredCommit(info, tx);
      });
    }
  } catch (e) {
    abortCapture(tx, e);
    return;
  }
  deferredCommit(info, tx);
}

/** Commits now if the app asked to while outbox requests were still to be issued. */
function deferredCommit(info, tx) {
  if (!info.commitAsked || info.pending > 0 || info.reserving > 0) return;
  info.commitAsked = false;
  try { originals.commit.call(tx); } catch { /* already finished or aborted */ }
}

function row(store, key, op, value) {
  return { s: store, k: key, o: op, t: Date.now(), v: value };
}

function install() {
  if (originals) return;
  const F = IDBFactory.prototype;
  const D = IDBDatabase.prototype;
  const S = IDBObjectStore.prototype;
  const C = IDBCursor.prototype;
  const T = IDBTransaction.prototype;
  const V = IDBVersionChangeEvent.prototype;
  const getter = (proto, prop) => Object.getOwnPropertyDescriptor(proto, prop).get;
  originals = {
    open: F.open,
    deleteDatabase: F.deleteDatabase,
    transaction: D.transaction,
    dbVersion: getter(D, 'version'),
    dbStoreNames: getter(D, 'objectStoreNames'),
    txStoreNames: getter(T, 'objectStoreNames'),
    txObjectStore: T.objectStore,
    oldVersion: getter(V, 'oldVersion'),
    newVersion: getter(V, 'newVersion'),
    put: S.put,
    add: S.add,
    delete: S.delete,
    clear: S.clear,
    getAllKeys: S.getAllKeys,
    cursorUpdate: C.update,
    cursorDelete: C.delete,
    commit: T.commit,
  };
  const o = originals;

  // The wasm core opens its own connections with these (no translation, no capture).
  globalThis.__s2sRawIndexedDB = {
    open: (name, version) => (version === undefined
      ? o.open.call(indexedDB, name)
      : o.open.call(indexedDB, name, version)),
    deleteDatabase: (name) => o.deleteDatabase.call(indexedDB, name),
    databases: () => indexedDB.databases(),
    cmp: (a, b) => indexedDB.cmp(a, b),
  };

  F.open = function open(name, version) {
    const cfg = configs.get(String(name));
    if (!cfg) return version === undefined ? o.open.call(this, name) : o.open.call(this, name, version);
    const req = version === undefined
      ? o.open.call(this, name)
      : o.open.call(this, name, Number(version) + cfg.offset);
    appRequests.set(req, String(name));
    req.addEventListener('upgradeneeded', () => {
      const db = req.result;
      appDbs.set(db, String(name));
      ensureInternalStores(db, req.transaction);
      track(req.transaction, String(name), cfg);
    });
    req.addEventListener('success', () => {
      appDbs.set(req.result, String(name));
      cfg.onOpen?.(String(name));
    });
    return req;
  };

  F.deleteDatabase = function deleteDatabase(name) {
    const cfg = configs.get(String(name));
    if (cfg) cfg.offset = 0;
    return o.deleteDatabase.call(this, name);
  };

  D.transaction = function transaction(storeNames, mode, options) {
    const name = appDbs.get(this);
    const cfg = name === undefined ? undefined : configs.get(name);
    if (!cfg || mode !== 'readwrite') return o.transaction.apply(this, arguments);
    const list = typeof storeNames === 'string' ? [storeNames] : Array.from(storeNames);
    if (!list.some((s) => watched(cfg, s))) return o.transaction.apply(this, arguments);
    const tx = o.transaction.call(this, [...list, OUTBOX], mode, options);
    track(tx, name, cfg);
    return tx;
  };

  if (typeof o.commit === 'function') {
    // commit() forbids new requests, but the outbox row of the last writes, and the reservation of
    // a batch row's seqs, are issued from success events that may come after the app's commit():
    // such a commit waits until they are issued (IndexedDB would commit by itself afterwards; this
    // only keeps the early commit).
    T.commit = function commit() {
      const i = captured.get(this);
      if (i && (i.pending > 0 || i.reserving > 0)) {
        i.commitAsked = true;
        return undefined;
      }
      return o.commit.call(this);
    };
  }

  const defineGetter = (proto, prop, get) => Object.defineProperty(proto, prop, {
    get, configurable: true, enumerable: true,
  });
  defineGetter(D, 'version', function version() {
    const v = o.dbVersion.call(this);
    const name = appDbs.get(this);
    const cfg = name === undefined ? undefined : configs.get(name);
    return cfg ? v - cfg.offset : v;
  });
  defineGetter(D, 'objectStoreNames', function objectStoreNames() {
    const list = o.dbStoreNames.call(this);
    return appDbs.has(this) ? filteredNames(list) : list;
  });
  defineGetter(T, 'objectStoreNames', function objectStoreNames() {
    const list = o.txStoreNames.call(this);
    return captured.has(this) ? filteredNames(list) : list;
  });
  const eventOffset = (event) => {
    const t = event.target;
    const name = appRequests.get(t) ?? appDbs.get(t);
    return name === undefined ? 0 : (configs.get(name)?.offset ?? 0);
  };
  defineGetter(V, 'oldVersion', function oldVersion() {
    const v = o.oldVersion.call(this);
    return v > 0 ? v - eventOffset(this) : v;
  });
  defineGetter(V, 'newVersion', function newVersion() {
    const v = o.newVersion.call(this);
    return v === null ? v : v - eventOffset(this);
  });

  const info = (store) => {
    const i = captured.get(store.transaction);
    return i && watched(i.cfg, store.name) ? i : undefined;
  };
  S.put = function put(value, key) {
    const req = o.put.apply(this, arguments);
    const i = info(this);
    if (i) capture(i, this.transaction, req, (k) => [row(this.name, k, 'put', inlineKeyValue(this, value, k))]);
    return req;
  };
  S.add = function add(value, key) {
    const req = o.add.apply(this, arguments);
    const i = info(this);
    if (i) capture(i, this.transaction, req, (k) => [row(this.name, k, 'add', inlineKeyValue(this, value, k))]);
    return req;
  };
  S.delete = function del(query) {
    const i = info(this);
    if (!i) return o.delete.apply(this, arguments);
    if (query instanceof IDBKeyRange) {
      // Which keys a range deletes is known only by reading them first (same transaction, so
      // the result is exactly what the delete removes).
      const keysReq = o.getAllKeys.call(this, query);
      const req = o.delete.apply(this, arguments);
      capture(i, this.transaction, req, () => keysReq.result.map((k) => row(this.name, k, 'delete', undefined)));
      return req;
    }
    const req = o.delete.apply(this, arguments);
    capture(i, this.transaction, req, () => [row(this.name, query, 'delete', undefined)]);
    return req;
  };
  S.clear = function clear() {
    const req = o.clear.apply(this, arguments);
    const i = info(this);
    if (i) capture(i, this.transaction, req, () => [row(this.name, undefined, 'clear', undefined)]);
    return req;
  };
  const cursorStore = (cursor) => (cursor.source instanceof IDBIndex ? cursor.source.objectStore : cursor.source);
  C.update = function update(value) {
    const store = cursorStore(this);
    const i = info(store);
    const key = this.primaryKey;
    const req = o.cursorUpdate.apply(this, arguments);
    if (i) capture(i, store.transaction, req, () => [row(store.name, key, 'put', value)]);
    return req;
  };
  C.delete = function del() {
    const store = cursorStore(this);
    const i = info(store);
    const key = this.primaryKey;
    const req = o.cursorDelete.apply(this, arguments);
    if (i) capture(i, store.transaction, req, () => [row(store.name, key, 'delete', undefined)]);
    return req;
  };
}

function rawRequest(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/**
 * Prepares database `name` before the app opens it: a database that exists without the client's
 * stores gets them by a version bump (remembered as the offset the shim hides from the app).
 */
async function prepare(name) {
  const raw = globalThis.__s2sRawIndexedDB;
  const list = typeof indexedDB.databases === 'function' ? await indexedDB.databases() : null;
  if (list && !list.some((d) => d.name === name)) return 0; // created by the app's own upgrade
  const db = await rawRequest(raw.open(name));
  const names = originals.dbStoreNames.call(db);
  const version = originals.dbVersion.call(db);
  if (names.contains(OUTBOX) && names.contains(META) && names.contains(REJECTED)) {
    const tx = originals.transaction.call(db, META);
    const offset = await rawRequest(tx.objectStore(META).get(OFFSET_KEY));
    db.close();
    return typeof offset === 'number' ? offset : 0;
  }
  db.close();
  const req = raw.open(name, version + 1);
  let previous = 0;
  req.onupgradeneeded = () => {
    ensureInternalStores(req.result, req.transaction);
    const meta = req.transaction.objectStore(META);
    const got = meta.get(OFFSET_KEY);
    got.onsuccess = () => {
      previous = typeof got.result === 'number' ? got.result : 0;
      meta.put(previous + 1, OFFSET_KEY);
    };
  };
  const upgraded = await rawRequest(req);
  upgraded.close();
  return previous + 1;
}

/**
 * Installs the shim for `databases` (`{ name: { stores?: string[] } }`; no `stores`: every store
 * of the database). Call and await it before the app opens these databases.
 * `hooks.onOpen(name)` runs when the app opened one, `hooks.onCommit(name, rows)` after a
 * transaction committed `rows` captured changes.
 */
export async function installCapture(databases, hooks = {}) {
  if (typeof indexedDB === 'undefined') throw new Error('IndexedDB is not available here');
  install();
  const names = [];
  for (const [name, spec] of Object.entries(databases)) {
    if (configs.has(name)) throw new Error(`database ${JSON.stringify(name)} is already instrumented`);
    const stores = spec?.stores ? new Set(spec.stores) : null;
    if (stores) {
      for (const s of stores) {
        if (isInternal(s)) throw new Error(`store ${JSON.stringify(s)} is internal to the client`);
      }
    }
    const cfg = { stores, offset: 0, onOpen: hooks.onOpen, onCommit: hooks.onCommit };
    cfg.offset = await prepare(name);
    configs.set(name, cfg);
    names.push(name);
  }
  return () => { for (const n of names) configs.delete(n); };
}

export { INTERNAL as INTERNAL_STORES };
