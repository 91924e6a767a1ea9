// Types of the s2s-wasm facade (index.js).

/** Options of one object store in the app's schema. */
export interface StoreOptions {
  /** In-line key path; omit for out-of-line keys. */
  keyPath?: string;
  autoIncrement?: boolean;
  /** Index name → key path, or full options. */
  indexes?: Record<string, string | { keyPath: string; unique?: boolean; multiEntry?: boolean }>;
  /** Capture writes to this store into the outbox (default true). */
  watch?: boolean;
}

export interface Schema {
  /** IndexedDB version of the app's schema (the client bumps it once to add its own stores). */
  version: number;
  stores: Record<string, StoreOptions>;
}

export interface OpenOptions {
  schema?: Schema;
  /** `ws://host:port/v1/ws` of the bridge; omit to capture without uploading. */
  bridgeUrl?: string;
  /** Bearer token, sent as the first WebSocket message (never in the URL). */
  token?: string;
  /** Attributes added to every FlowFile. */
  attributes?: Record<string, string>;
  /** Most records per batch (default 500). */
  batchSize?: number;
  /** Most batches sent and not yet acknowledged (default 4; the bridge's `max_inflight` caps it). */
  maxInFlight?: number;
  ackTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  idlePollMs?: number;
  /** Where to load `s2s_wasm_bg.wasm` from (default: next to s2s_wasm.js). */
  wasmUrl?: string | URL;
}

export type Op = 'put' | 'add' | 'delete' | 'clear' | 'snapshot';

export type StatusEvent =
  | { type: 'queued'; count: number; source: 'local' }
  | { type: 'inflight'; count: number; seqFrom: number; seqTo: number; source: Source }
  | { type: 'delivered'; count: number; seqFrom: number; seqTo: number; depth: number; total: number; source: Source }
  | { type: 'error'; kind: string; message: string; fatal: boolean; retryInMs: number; source: Source }
  | { type: 'leader'; source: Source };

/** `local`: this tab's uploader or writes; `remote`: relayed from the uploading tab. */
export type Source = 'local' | 'remote';

export interface OutboxRow {
  seq: number;
  store: string;
  key: IDBValidKey | undefined;
  op: Op;
  timestamp: number;
  value: unknown;
}

export interface PendingFlowFile {
  attributes: Record<string, string>;
  content: Uint8Array;
}

/** A record set aside (in `__s2s_rejected`): rejected by the bridge or refused by the client. */
export interface RejectedRecord {
  seq: number;
  store: string;
  key: IDBValidKey | undefined;
  op: Op;
  timestamp: number;
  value: unknown;
  /** Why it was set aside (error kind and message). */
  reason: string;
}

/** `flush()` rejects with this when records queued before the call were set aside. */
export interface SetAsideError extends Error {
  name: 'SetAsideError';
  records: RejectedRecord[];
}

export class Transaction {
  put(store: string, value: unknown, key?: IDBValidKey): Promise<IDBValidKey>;
  add(store: string, value: unknown, key?: IDBValidKey): Promise<IDBValidKey>;
  delete(store: string, key: IDBValidKey): Promise<IDBValidKey>;
  clear(store: string): Promise<undefined>;
  /** Aborts (nothing is written); `transaction()` then resolves with `fn`'s result. */
  abort(): void;
  readonly aborted: boolean;
}

export class Client {
  readonly clientId: string;
  readonly isUploader: boolean;
  readonly db: IDBDatabase;
  /** Closed by `close()`, or because another tab upgraded the database. */
  readonly closed: boolean;
  onStatus(listener: (event: StatusEvent) => void): () => void;
  transaction<T>(stores: string | string[], fn: (tx: Transaction) => T | Promise<T>): Promise<T>;
  put(store: string, value: unknown, key?: IDBValidKey): Promise<IDBValidKey>;
  add(store: string, value: unknown, key?: IDBValidKey): Promise<IDBValidKey>;
  delete(store: string, key: IDBValidKey): Promise<IDBValidKey>;
  clear(store: string): Promise<undefined>;
  get<T = unknown>(store: string, key: IDBValidKey): Promise<T | undefined>;
  getAll<T = unknown>(store: string, query?: IDBValidKey | IDBKeyRange | null, count?: number): Promise<T[]>;
  snapshot(store: string, options?: { chunkSize?: number; restart?: boolean }): Promise<number>;
  flush(options?: { timeoutMs?: number }): Promise<void>;
  depth(): Promise<number>;
  pending(limit?: number): Promise<OutboxRow[]>;
  pendingFlowFiles(limit?: number): Promise<PendingFlowFile[]>;
  /** Set-aside records, oldest first. */
  rejected(limit?: number): Promise<RejectedRecord[]>;
  /** Re-queues set-aside records (all, or those `seqs`) at the end of the outbox; resolves to the count. */
  retryRejected(seqs?: number[]): Promise<number>;
  /** Deletes set-aside records (all, or those `seqs`) for good; resolves to the count. */
  dropRejected(seqs?: number[]): Promise<number>;
  /** Wakes the uploader for rows committed outside the client (`instrument()` calls it). */
  notifyCommitted(rows: number): void;
  close(): void;
}

export interface InstrumentOptions extends Omit<OpenOptions, 'schema'> {
  /** Databases to capture: name → `{ stores }` (omit `stores` to capture every store). */
  databases: Record<string, { stores?: string[] }>;
}

export interface Instrumentation {
  /** The client of an instrumented database (flush, depth, status, rejected), once the app opened it. */
  client(name: string): Promise<Client>;
  /** Stops capturing on connections opened from now on and closes the uploaders. */
  uninstall(): void;
}

export function initialize(wasmUrl?: string | URL): Promise<unknown>;
export function open(name: string, options?: OpenOptions): Promise<Client>;
/** Zero-code capture of the app's own IndexedDB writes; await it before the app opens its databases. */
export function instrument(options: InstrumentOptions): Promise<Instrumentation>;
