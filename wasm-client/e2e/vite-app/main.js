// A web app as a user would write it: s2s-wasm installed from its npm tarball, bundled by Vite.
import { open } from 's2s-wasm';

const params = new URLSearchParams(location.search);
const n = Number(params.get('n') ?? 20);
const state = document.getElementById('state');

async function main() {
  const client = await open('vite-app', {
    schema: { version: 1, stores: { notes: { keyPath: 'id', autoIncrement: true } } },
    bridgeUrl: params.get('bridge'),
    attributes: { 'app.name': 'vite-app' },
  });
  const records = [];
  for (let i = 0; i < n; i += 1) {
    const note = { text: `note ${i + 1}`, at: i };
    const id = await client.add('notes', note);
    records.push({ ...note, id });
  }
  // A failed write rejects with an Error named after the DOMException.
  let failure = null;
  try {
    await client.add('notes', { id: records[0].id, text: 'duplicate' });
  } catch (e) {
    failure = { isError: e instanceof Error, name: e.name, message: e.message };
  }
  // An abort the app asks for is not an error.
  const aborted = await client.transaction(['notes'], (tx) => {
    tx.put('notes', { id: 999, text: 'never' });
    tx.abort();
    return 'aborted on purpose';
  });
  await client.flush({ timeoutMs: 60000 });
  return { records, clientId: client.clientId, depth: await client.depth(), failure, aborted };
}

main().then((r) => {
  window.result = r;
  state.textContent = 'done';
}, (e) => {
  window.result = { error: `${e.name}: ${e.message}` };
  state.textContent = `failed: ${e}`;
});
