// Demo: a to-do list that writes to IndexedDB through the s2s-wasm client.
import { open } from './pkg/index.js';

const params = new URLSearchParams(location.search);
const wsScheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
const bridgeUrl = params.get('bridge') ?? `${wsScheme}//${location.host}/v1/ws`;
const $ = (id) => document.getElementById(id);

const dbName = params.get('db') ?? 'todo-demo';
const client = await open(dbName, {
  schema: { version: 1, stores: { todos: { keyPath: 'id', autoIncrement: true, indexes: { byCreated: 'created' } } } },
  bridgeUrl,
  token: params.get('token') ?? undefined,
  attributes: { 'app.name': 'todo-demo' },
});

let delivered = 0;
$('bridge').textContent = bridgeUrl;
$('client').firstElementChild.textContent = client.clientId;

function log(text, cls = '') {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  if (cls) li.className = cls;
  $('log').prepend(li);
  while ($('log').children.length > 30) $('log').lastChild.remove();
}

function setState(text, cls) {
  $('state').textContent = text;
  $('state').className = cls;
}

let depthTimer = null;
function refreshDepth() {
  // Coalesce: a burst of events costs one count.
  depthTimer ??= setTimeout(async () => {
    depthTimer = null;
    $('depth').textContent = String(await client.depth());
    $('role').textContent = client.isUploader ? 'uploader (holds the Web Lock)' : 'writer (another tab uploads)';
  }, 50);
}

client.onStatus((ev) => {
  switch (ev.type) {
    case 'queued': log(`queued ${ev.count}`); break;
    case 'inflight': setState(`sending ${ev.count}…`, 'warn'); break;
    case 'delivered':
      delivered += ev.count;
      $('delivered').textContent = String(delivered);
      setState('delivered', 'ok');
      log(`delivered ${ev.count} (seq ${ev.seqFrom}–${ev.seqTo})`, 'ok');
      break;
    case 'error':
      setState(ev.fatal ? `rejected: ${ev.message}` : `retrying in ${Math.round(ev.retryInMs)} ms`, ev.fatal ? 'err' : 'warn');
      log(`${ev.kind}: ${ev.message}`, 'err');
      break;
    case 'leader': log('this tab is now the uploader', 'ok'); break;
  }
  refreshDepth();
});

async function render() {
  const todos = await client.getAll('todos');
  const list = $('list');
  list.replaceChildren(...todos.slice(-200).reverse().map((t) => {
    const li = document.createElement('li');
    li.className = t.done ? 'done' : '';
    li.dataset.id = String(t.id);
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = !!t.done;
    box.onchange = async () => { await client.put('todos', { ...t, done: box.checked }); render(); };
    const span = document.createElement('span');
    span.textContent = t.title;
    const del = document.createElement('button');
    del.textContent = '✕';
    del.title = 'delete';
    del.onclick = async () => { await client.delete('todos', t.id); render(); };
    li.append(box, span, del);
    return li;
  }));
  refreshDepth();
}

async function addTodo(title) {
  const id = await client.add('todos', { title, done: false, created: Date.now() });
  await render();
  return id;
}

$('new').onsubmit = async (e) => {
  e.preventDefault();
  const title = $('title').value.trim();
  if (!title) return;
  $('title').value = '';
  await addTodo(title);
};
$('bulk').onclick = async () => {
  await client.transaction(['todos'], async (tx) => {
    for (let i = 0; i < 100; i++) tx.add('todos', { title: `bulk #${i + 1}`, done: false, created: Date.now() });
  });
  render();
};
$('clear').onclick = async () => { await client.clear('todos'); render(); };
$('flush').onclick = async () => {
  const button = $('flush');
  delete button.dataset.result; // set when this flush settles (the e2e test waits for it)
  try {
    await client.flush({ timeoutMs: 15000 });
    log('flush: all delivered', 'ok');
    button.dataset.result = 'delivered';
  } catch (e) {
    log(`flush: ${e.name}: ${e.message}`, 'err');
    button.dataset.result = `${e.name}: ${e.message}`;
  }
};

// The server-side copy: `cargo xtask mirror --demo` writes mirror.json next to this page, naming
// an endpoint that counts this client's live rows in PostgreSQL's idb_mirror table (?mirror=URL
// overrides). Without one the page says so instead of guessing.
async function mirrorEndpoint() {
  if (params.get('mirror')) return params.get('mirror');
  try {
    const r = await fetch('mirror.json', { cache: 'no-store' });
    if (r.ok) return (await r.json()).countUrl ?? null;
  } catch { /* not configured */ }
  return null;
}
const mirrorUrl = await mirrorEndpoint();
async function refreshMirror() {
  const dd = $('mirror');
  if (!mirrorUrl) {
    dd.textContent = 'not configured (run `cargo xtask mirror --demo` to see the rows in PostgreSQL)';
    dd.className = 'muted';
    return;
  }
  try {
    const u = new URL(mirrorUrl, location.href);
    u.searchParams.set('db', dbName);
    u.searchParams.set('store', 'todos');
    u.searchParams.set('client', client.clientId);
    const r = await fetch(u, { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const { rows } = await r.json();
    dd.textContent = `${rows} live row${rows === 1 ? '' : 's'} (this tab's IndexedDB: ${(await client.getAll('todos')).length})`;
    dd.className = 'big';
  } catch (e) {
    dd.textContent = `unreachable: ${e.message}`;
    dd.className = 'err';
  }
}
refreshMirror();
if (mirrorUrl) setInterval(refreshMirror, 2000);

// For the e2e test and the console.
window.demo = { client, addTodo, render };
await render();
setState(client.isUploader ? 'idle' : 'idle (another tab uploads)', 'ok');
document.body.dataset.ready = 'true';
