// s2s-wasm JS facade: the documented API, on top of the wasm-bindgen module (`s2s_wasm.js`,
// generated with `--target web`). Plain ESM: no bundler needed. Types: index.d.ts.
import init, { RawClient } from './s2s_wasm.js';

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
  constructor(raw) { this.#raw = raw; }
  put(store, value, key) { return this.#raw.put(store, value, key); }
  add(store, value, key) { return this.#raw.add(store, value, key); }
  delete(store, key) { return this.#raw.delete(store, key); }
  clear(store) { return this.#raw.clear(store); }
  /** Aborts: neither data nor outbox rows are written; `transaction()` then rejects. */
  abort() { this.#raw.abort(); }
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
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
    try {
      result = await fn(new Transaction(raw));
    } catch (e) {
      raw.abort();
      raw.free();
      throw e;
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

  /** Resolves once everything queued before the call is delivered (any tab may upload it). */
  flush({ timeoutMs = 30000 } = {}) { return this.#raw.flush(timeoutMs); }

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
