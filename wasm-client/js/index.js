// s2s-wasm JS facade: the documented API, on top of the wasm-bindgen module (`s2s_wasm.js`,
// generated with `--target web`; the module file is found with `new URL(…, import.meta.url)`, which
// bundlers such as Vite understand). Plain ESM: no bundler needed. Types: index.d.ts.
import init, { RawClient } from './s2s_wasm.js';
import { installCapture } from './instrument.js';

const REJECTED = '__s2s_rejected';
const OUTBOX = '__s2s_outbox';

let ready = null;

/** Loads the wasm module once (optionally from `wasmUrl`). */
export function initialize(wasmUrl) {
  ready ??= init(wasmUrl === undefined ? undefined : { module_or_path: wasmUrl });
  return ready;
}

/** Opens (creating or upgrading) database `name` with the app's schema plus the outbox. */
export async function open(name, options = {}) {
  await initialize(options.wasmUrl);
  const raw = await RawClient.open(name, options.schema ?? { version: 1, stores: {} }, {
    bridgeUrl: options.bridgeUrl,
    token: options.token,
    attributes: options.attributes,
    batchSize: options.batchSize,
    maxInFlight: options.maxInFlight,
    ackTimeoutMs: options.ackTimeoutMs,
    backoffBaseMs: options.backoffBaseMs,
    backoffCapMs: options.backoffCapMs,
    idlePollMs: options.idlePollMs,
  });
  return new Client(raw);
}

/** Writes inside one `transaction(stores, fn)`; every method returns a Promise of the key. */
export class Transaction {
  #raw;
  #aborted = false;
  constructor(raw) { this.#raw = raw; }
  put(store, value, key) { return this.#guard(() => this.#raw.put(store, value, key)); }
  add(store, value, key) { return this.#guard(() => this.#raw.add(store, value, key)); }
  delete(store, key) { return this.#guard(() => this.#raw.delete(store, key)); }
  clear(store) { return this.#guard(() => this.#raw.clear(store)); }
  /**
   * Aborts: neither data nor outbox rows are written. Asked for by the app, this is not an
   * error: `transaction()` resolves with `fn`'s result (writes still pending reject with
   * `AbortError`; they need no handler).
   */
  abort() {
    this.#aborted = true;
    this.#raw.abort();
  }
  get aborted() { return this.#aborted; }
  #guard(write) {
    const p = write();
    // A write the app does not await must not become an "uncaught (in promise)" error when the
    // transaction aborts: the outcome is reported by `transaction()` itself.
    p.catch(() => {});
    return p;
  }
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(domError(req.error, 'request'));
  });
}

/** An `Error` named after a DOMException, with its message and the exception as `cause`. */
function domError(ex, what) {
  const err = new Error(`${what} failed: ${ex?.name ?? 'UnknownError'}: ${ex?.message ?? ''}`, { cause: ex });
  err.name = ex?.name ?? 'UnknownError';
  return err;
}

function txDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(domError(tx.error, 'transaction'));
  });
}

function rejectedRow(seq, r) {
  return { seq, store: r.s, key: r.k, op: r.o, timestamp: r.t, value: r.v, reason: r.reason ?? '' };
}

export class Client {
  #raw;
  #listeners = new Set();

  constructor(raw) {
    this.#raw = raw;
    raw.onStatus((event) => {
      for (const fn of this.#listeners) {
        try { fn(event); } catch (e) { console.error('s2s-wasm status listener failed', e); }
      }
    });
  }

  /** `idb.client.id`: stable for this database in this browser profile. */
  get clientId() { return this.#raw.clientId; }
  /** Whether this tab currently runs the origin's uploader. */
  get isUploader() { return this.#raw.isUploader; }
  /** The underlying IDBDatabase, for reads and indexes. Write only through this client. */
  get db() { return this.#raw.db; }
  /** Whether the client is closed (`close()`, or another tab upgraded the database). */
  get closed() { return this.#raw.closed; }

  /** Wakes the uploader for `rows` outbox rows committed outside the client (used by `instrument()`). */
  notifyCommitted(rows) { this.#raw.notifyCommitted(rows); }

  /** Subscribes to status events; returns the unsubscribe function. */
  onStatus(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Runs `fn(tx)` in one IndexedDB transaction over `stores` plus the outbox: data and outbox
   * rows commit together or not at all. Inside `fn`, await only `tx`'s own promises (IndexedDB
   * commits a transaction that is left idle). Rejects (and writes nothing) if `fn` throws or a
   * write fails.
   */
  async transaction(stores, fn) {
    const raw = this.#raw.begin(Array.isArray(stores) ? stores : [stores]);
    let result;
    const tx = new Transaction(raw);
    try {
      result = await fn(tx);
    } catch (e) {
      raw.abort();
      raw.free();
      throw e;
    }
    if (tx.aborted) {
      // The app asked for it: nothing was written, and that is what it wanted.
      raw.free();
      return result;
    }
    try {
      await raw.commit();
    } finally {
      raw.free();
    }
    return result;
  }

  put(store, value, key) { return this.transaction([store], (tx) => tx.put(store, value, key)); }
  add(store, value, key) { return this.transaction([store], (tx) => tx.add(store, value, key)); }
  delete(store, key) { return this.transaction([store], (tx) => tx.delete(store, key)); }
  clear(store) { return this.transaction([store], (tx) => tx.clear(store)); }

  /** Reads one record. */
  get(store, key) {
    return request(this.db.transaction(store).objectStore(store).get(key));
  }

  /** Reads all records (optionally a key range / count). */
  getAll(store, query, count) {
    return request(this.db.transaction(store).objectStore(store).getAll(query, count));
  }

  /**
   * Exports the existing records of `store` through the outbox (initial load), in chunks that
   * each commit with their checkpoint: after a reload the next call resumes where it stopped.
   * Resolves to the number of records exported by this call (0 once complete, unless restart).
   */
  snapshot(store, { chunkSize = 500, restart = false } = {}) {
    return this.#raw.snapshot(store, chunkSize, restart);
  }

  /**
   * Resolves once every record that was in the outbox when `flush()` was called has left it
   * (whichever tab uploads). Rejects with `SetAsideError` when some of those records were set
   * aside instead of delivered (`err.records`: their `RejectedRecord`s), with `TimeoutError`
   * after `timeoutMs`, with `ClosedError` when the client closes meanwhile.
   */
  async flush({ timeoutMs = 30000 } = {}) {
    const setAside = await this.#raw.flush(timeoutMs);
    if (setAside.length > 0) {
      const records = await this.rejected();
      const err = new Error(`${setAside.length} record(s) queued before flush() were set aside instead of delivered (see client.rejected())`);
      err.name = 'SetAsideError';
      err.records = records.filter((r) => setAside.includes(r.seq));
      throw err;
    }
  }

  /** Records set aside (rejected by the bridge or refused by the client), oldest first. */
  async rejected(limit) {
    const tx = this.db.transaction(REJECTED);
    const store = tx.objectStore(REJECTED);
    const [keys, rows] = await Promise.all([request(store.getAllKeys(null, limit)), request(store.getAll(null, limit))]);
    return keys.map((k, i) => rejectedRow(k, rows[i]));
  }

  /**
   * Puts set-aside records back into the outbox (as new rows, at the end of the queue) and wakes
   * the uploader. `seqs`: which ones (default all). Resolves to the number re-queued.
   */
  async retryRejected(seqs) {
    const tx = this.db.transaction([REJECTED, OUTBOX], 'readwrite');
    const done = txDone(tx);
    const rejected = tx.objectStore(REJECTED);
    const outbox = tx.objectStore(OUTBOX);
    const [keys, rows] = await Promise.all([request(rejected.getAllKeys()), request(rejected.getAll())]);
    let n = 0;
    keys.forEach((k, i) => {
      if (seqs !== undefined && !seqs.includes(k)) return;
      const { reason, ...row } = rows[i];
      outbox.add(row);
      rejected.delete(k);
      n += 1;
    });
    await done;
    if (n > 0) this.#raw.notifyCommitted(n);
    return n;
  }

  /** Deletes set-aside records for good. `seqs`: which ones (default all). Resolves to the count. */
  async dropRejected(seqs) {
    const tx = this.db.transaction(REJECTED, 'readwrite');
    const done = txDone(tx);
    const store = tx.objectStore(REJECTED);
    const keys = await request(store.getAllKeys());
    const drop = seqs === undefined ? keys : keys.filter((k) => seqs.includes(k));
    for (const k of drop) store.delete(k);
    await done;
    return drop.length;
  }

  /** Records waiting in the outbox. */
  depth() { return this.#raw.depth(); }

  /** Oldest outbox rows `{seq, store, key, op, timestamp, value}`. */
  pending(limit = 100) { return this.#raw.pending(limit); }

  /** The FlowFiles the oldest rows become: `{attributes, content: Uint8Array}`. */
  pendingFlowFiles(limit = 100) { return this.#raw.pendingFlowFiles(limit); }

  /** Stops uploading (another tab takes over) and closes the database. Undelivered rows stay. */
  close() {
    this.#listeners.clear();
    this.#raw.close();
  }
}

/**
 * Zero-code capture: patches IndexedDB so that writes made by the app's existing code (plain
 * IndexedDB, `idb`, Dexie, ...) to `databases` are captured into the outbox in the same
 * transaction, then uploads them like `open()` does. Await it before the app opens its databases.
 * `options.databases`: `{ name: { stores?: string[] } }` (no `stores`: all of them); the other
 * options are `open()`'s (`bridgeUrl`, `token`, `attributes`, ...; `schema` is the app's business).
 */
export async function instrument({ databases, ...options } = {}) {
  if (!databases || typeof databases !== 'object') {
    throw new TypeError('instrument({ databases: { name: { stores?: [...] } } }) needs the databases to capture');
  }
  await initialize(options.wasmUrl);
  const clients = new Map();
  const waiters = new Map();
  const start = (name) => {
    const current = clients.get(name);
    if (current && !current.closed) return;
    const opening = { promise: null, client: null };
    clients.set(name, opening);
    opening.promise = open(name, { ...options, schema: { version: 1, stores: {} } }).then((client) => {
      opening.client = client;
      for (const w of waiters.get(name) ?? []) w.resolve(client);
      waiters.delete(name);
      return client;
    }, (e) => {
      // E.g. the app upgraded the database meanwhile: the next time the app opens it, again.
      console.warn(`s2s-wasm: could not attach to ${name} yet (${e.name}: ${e.message}); retrying when the app opens it again`);
      clients.delete(name);
      throw e;
    });
    opening.promise.catch(() => {});
    Object.defineProperty(opening, 'closed', { get: () => opening.client?.closed ?? false });
  };
  const uninstall = await installCapture(databases, {
    onOpen: start,
    onCommit: (name, rows) => {
      const c = clients.get(name)?.client;
      if (c && !c.closed) {
        c.notifyCommitted(rows);
      } else if (typeof BroadcastChannel === 'function') {
        const ch = new BroadcastChannel(`s2s-wasm:${name}`);
        ch.postMessage({ t: 'wake' });
        ch.close();
      }
    },
  });
  return {
    /** The client of database `name` (flush, depth, status, rejected records), once the app opened it. */
    client(name) {
      if (!Object.hasOwn(databases, name)) return Promise.reject(new Error(`${name} is not instrumented`));
      const c = clients.get(name);
      if (c?.client && !c.closed) return Promise.resolve(c.client);
      return new Promise((resolve, reject) => {
        if (!waiters.has(name)) waiters.set(name, []);
        waiters.get(name).push({ resolve, reject });
      });
    },
    /** Stops capturing new connections' writes and closes the uploaders. */
    uninstall() {
      uninstall();
      for (const c of clients.values()) c.client?.close();
      clients.clear();
    },
  };
}
