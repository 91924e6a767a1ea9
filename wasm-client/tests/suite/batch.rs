//! Batch rows (`{b: [...]}`, written by `instrument()`: one outbox row per batch of captured
//! writes): expanded into one record per change with its own seq, read in part, removed and set
//! aside in part, counted by change; a malformed one is a typed error.

use js_sys::{Function, Promise};
use s2s_wasm::Client;
use s2s_wasm::api::outbox::{self, OutboxRow};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::{open, unique};

/// Writes outbox rows the way `js/instrument.js` does, in one raw read-write transaction:
/// `rows` is a JS array of row values; a `{b: [...]}` of n > 1 changes gets its seqs reserved
/// (`put` + `delete` at K+n-1) and its index entry `[K, n]`. Resolves to the rows' keys.
fn raw_add(client: &Client, rows: &JsValue) -> Promise {
    let f = Function::new_with_args(
        "db, rows",
        "return new Promise((resolve, reject) => {
           const tx = db.transaction('__s2s_outbox', 'readwrite');
           const os = tx.objectStore('__s2s_outbox');
           const keys = [];
           // One after the other, as instrument() writes them: a batch reserves its seqs before
           // the next row is added.
           const next = (i) => {
             if (i === rows.length) return;
             const row = rows[i];
             const req = os.add(row);
             req.onsuccess = () => {
               keys.push(req.result);
               const n = Array.isArray(row && row.b) ? row.b.length : 1;
               if (n > 1) {
                 os.put(0, req.result + n - 1);
                 os.delete(req.result + n - 1);
                 os.put(0, [req.result, n]);
               }
               next(i + 1);
             };
           };
           next(0);
           tx.oncomplete = () => resolve(keys);
           tx.onabort = () => reject(tx.error);
         });",
    );
    f.call2(&JsValue::NULL, client.database(), rows)
        .unwrap()
        .unchecked_into()
}

/// Every key in the outbox store (rows and index entries).
fn raw_keys(client: &Client) -> Promise {
    let f = Function::new_with_args(
        "db",
        "return new Promise((resolve, reject) => {
           const req = db.transaction('__s2s_outbox').objectStore('__s2s_outbox').getAllKeys();
           req.onsuccess = () => resolve(req.result);
           req.onerror = () => reject(req.error);
         });",
    );
    f.call1(&JsValue::NULL, client.database())
        .unwrap()
        .unchecked_into()
}

fn change(i: u32) -> JsValue {
    let f = Function::new_with_args(
        "i",
        "return { s: 'blobs', k: 'k' + i, o: i % 3 === 2 ? 'delete' : 'put', t: 1700000000000 + i, v: i % 3 === 2 ? undefined : { i } };",
    );
    f.call1(&JsValue::NULL, &i.into()).unwrap()
}

/// A batch row of the changes `from..from + n`.
fn batch(from: u32, n: u32) -> JsValue {
    let b = js_sys::Array::new();
    for i in from..from + n {
        b.push(&change(i));
    }
    let row = js_sys::Object::new();
    js_sys::Reflect::set(&row, &"b".into(), &b).unwrap();
    row.into()
}

/// Writes `rows` and returns their keys.
async fn add(client: &Client, rows: &[JsValue]) -> Vec<u64> {
    let arr: js_sys::Array = rows.iter().collect();
    let keys = JsFuture::from(raw_add(client, &arr.into())).await.unwrap();
    js_sys::Array::from(&keys)
        .iter()
        .map(|k| k.as_f64().unwrap() as u64)
        .collect()
}

fn seqs(rows: &[OutboxRow]) -> Vec<u64> {
    rows.iter().map(|r| r.seq).collect()
}

/// The change number `i` a record carries (`k<i>`).
fn ids(rows: &[OutboxRow]) -> Vec<u32> {
    rows.iter()
        .map(|r| r.key.as_string().unwrap()[1..].parse().unwrap())
        .collect()
}

#[wasm_bindgen_test]
async fn batch_row_is_expanded_with_one_seq_per_change() {
    let client = open(&unique("batch-expand")).await;
    let keys = add(&client, &[change(0), batch(1, 5), change(6)]).await;
    let k = keys[1];
    assert_eq!(keys[0], k - 1);
    // The seqs K+1..K+4 are reserved for the batch: the next row comes after them.
    assert_eq!(keys[2], k + 5, "the batch reserves its seqs");

    let rows = client.pending(100).await.unwrap();
    assert_eq!(seqs(&rows), (k - 1..=k + 5).collect::<Vec<_>>());
    assert_eq!(ids(&rows), (0..=6).collect::<Vec<_>>());
    assert_eq!(rows[2].op, s2s_wasm::Op::Delete);
    assert!(rows[2].value.is_undefined());
    assert_eq!(rows[3].op, s2s_wasm::Op::Put);
    assert_eq!(
        js_sys::Reflect::get(&rows[3].value, &"i".into()).unwrap(),
        JsValue::from(3)
    );
    assert_eq!(rows[3].timestamp, 1_700_000_000_003.0);
    // depth counts changes, not rows; last_seq is the last change of the last row.
    assert_eq!(client.depth().await.unwrap(), 7);
    let db = client.database();
    assert_eq!(outbox::last_seq(db).await.unwrap(), Some(k + 5));
    add(&client, &[batch(7, 3)]).await;
    assert_eq!(client.depth().await.unwrap(), 10);
    assert_eq!(outbox::last_seq(db).await.unwrap(), Some(k + 8));
    // The FlowFile of a change inside a batch carries that change's own seq.
    let ff = client.flowfile(&rows[2]).await.unwrap();
    let seq = ff.attributes.iter().find(|(a, _)| a == "idb.seq").unwrap();
    assert_eq!(seq.1, (k + 1).to_string());
    client.close();
}

#[wasm_bindgen_test]
async fn partial_peek_continues_inside_a_batch_row() {
    let client = open(&unique("batch-peek")).await;
    let db = client.database();
    let keys = add(&client, &[batch(0, 10), change(10), batch(11, 4)]).await;
    let k = keys[0];
    let a = outbox::peek_after(db, 0, 3).await.unwrap();
    assert_eq!(ids(&a), vec![0, 1, 2]);
    let b = outbox::peek_after(db, a[2].seq, 4).await.unwrap();
    assert_eq!(ids(&b), vec![3, 4, 5, 6]);
    // From inside the first batch, over the single row, into the second batch.
    let c = outbox::peek_after(db, b[3].seq, 5).await.unwrap();
    assert_eq!(ids(&c), vec![7, 8, 9, 10, 11]);
    let d = outbox::peek_after(db, c[4].seq, 100).await.unwrap();
    assert_eq!(ids(&d), vec![12, 13, 14]);
    assert_eq!(seqs(&d), vec![k + 12, k + 13, k + 14]);
    assert!(
        outbox::peek_after(db, d[2].seq, 100)
            .await
            .unwrap()
            .is_empty()
    );
    // Limits count changes.
    assert_eq!(outbox::peek(db, 12).await.unwrap().len(), 12);
    client.close();
}

#[wasm_bindgen_test]
async fn partial_remove_splits_the_batch_row() {
    let client = open(&unique("batch-remove")).await;
    let db = client.database();
    let k = add(&client, &[batch(0, 10), change(10)]).await[0];

    // The head of the batch delivered: its other changes stay, with their seqs and values.
    outbox::remove(db, &(k..k + 4).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(client.depth().await.unwrap(), 7);
    let rows = client.pending(100).await.unwrap();
    assert_eq!(ids(&rows), vec![4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(seqs(&rows), (k + 4..=k + 10).collect::<Vec<_>>());
    assert_eq!(
        js_sys::Reflect::get(&rows[2].value, &"i".into()).unwrap(),
        JsValue::from(6)
    );
    // A change in the middle, and one run that starts inside what is left and ends on the single.
    outbox::remove(db, &[k + 6]).await.unwrap();
    assert_eq!(
        ids(&client.pending(100).await.unwrap()),
        vec![4, 5, 7, 8, 9, 10]
    );
    outbox::remove(db, &[k + 9, k + 10]).await.unwrap();
    assert_eq!(ids(&client.pending(100).await.unwrap()), vec![4, 5, 7, 8]);
    assert!(outbox::has_rows_upto(db, k + 4).await.unwrap());
    assert_eq!(outbox::last_seq(db).await.unwrap(), Some(k + 8));
    outbox::remove(db, &[k + 4, k + 5, k + 7, k + 8])
        .await
        .unwrap();
    assert_eq!(client.depth().await.unwrap(), 0);
    assert_eq!(
        js_sys::Array::from(&JsFuture::from(raw_keys(&client)).await.unwrap()).length(),
        0,
        "no row and no index entry left"
    );

    // A run strictly inside a batch row; then a whole batch row with a run covering it exactly.
    let keys = add(&client, &[batch(20, 6), batch(26, 3)]).await;
    let (k, k2) = (keys[0], keys[1]);
    outbox::remove(db, &[k + 2, k + 3]).await.unwrap();
    assert_eq!(
        ids(&client.pending(100).await.unwrap()),
        vec![20, 21, 24, 25, 26, 27, 28]
    );
    assert_eq!(client.depth().await.unwrap(), 7);
    outbox::remove(db, &[k2, k2 + 1, k2 + 2]).await.unwrap();
    assert_eq!(
        ids(&client.pending(100).await.unwrap()),
        vec![20, 21, 24, 25]
    );
    assert_eq!(client.depth().await.unwrap(), 4);
    client.close();
}

#[wasm_bindgen_test]
async fn set_aside_of_one_change_of_a_batch_row() {
    let client = open(&unique("batch-aside")).await;
    let db = client.database();
    let k = add(&client, &[batch(0, 4)]).await[0];
    let rows = client.pending(100).await.unwrap();
    outbox::set_aside(db, &rows[1..2], "bad record")
        .await
        .unwrap();
    let left = client.pending(100).await.unwrap();
    assert_eq!(ids(&left), vec![0, 2, 3]);
    assert_eq!(seqs(&left), vec![k, k + 2, k + 3]);
    assert_eq!(client.depth().await.unwrap(), 3);
    assert_eq!(
        outbox::set_aside_between(db, k, k + 3).await.unwrap(),
        vec![k + 1]
    );
    client.close();
}

#[wasm_bindgen_test]
async fn malformed_batch_rows_are_typed_errors() {
    let make = |b: JsValue| {
        let row = js_sys::Object::new();
        js_sys::Reflect::set(&row, &"b".into(), &b).unwrap();
        JsValue::from(row)
    };
    let junk = js_sys::Array::of2(&change(0), &JsValue::from_str("not a change"));
    let nested = js_sys::Array::of2(&change(0), &batch(1, 2));
    let missing = js_sys::Array::of2(&change(0), &js_sys::Object::new());
    for (what, row) in [
        ("not an array", make("x".into())),
        ("empty", make(js_sys::Array::new().into())),
        ("a change that is a string", make(junk.into())),
        ("a nested batch", make(nested.into())),
        ("a change without op and store", make(missing.into())),
    ] {
        let client = open(&unique("batch-bad")).await;
        add(&client, &[batch(0, 2), row]).await;
        // The good batch row before it reads fine.
        assert_eq!(ids(&client.pending(2).await.unwrap()), vec![0, 1], "{what}");
        match client.pending(10).await {
            Err(s2s_wasm::Error::Idb(m)) => {
                assert!(m.contains("not in the client's format"), "{what}: {m}")
            }
            other => panic!("{what}: {other:?}"),
        }
        client.close();
    }
}
