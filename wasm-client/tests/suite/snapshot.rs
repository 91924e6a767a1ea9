//! `snapshot(store)`: exports existing records once, resumable from its checkpoint.

use s2s_wasm::{Op, api::snapshot};
use std::rc::Rc;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

use super::{open, todo_schema, unique};

#[wasm_bindgen_test]
async fn snapshot_resumes_from_checkpoint_without_duplicates() {
    let name = unique("snap");
    let client = open(&name).await;
    // Records that exist before capture starts: written to an unwatched store's twin through
    // a schema where "blobs" is watched, then the outbox emptied, as if they predated the client.
    let tx = client.begin(&["blobs"]).unwrap();
    for i in 0..7 {
        let _ = tx
            .put("blobs", &JsValue::from(i * 10), Some(&JsValue::from(i)))
            .unwrap();
    }
    tx.commit().await.unwrap();
    let seqs: Vec<u64> = client
        .pending(100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    s2s_wasm::api::outbox::remove(client.database(), &seqs)
        .await
        .unwrap();

    // One chunk of 3, then "reload": the rest must continue after the checkpoint.
    let schema = Rc::new(todo_schema());
    let first = snapshot::next_chunk(client.database(), &schema, "blobs", 3, false)
        .await
        .unwrap();
    assert_eq!((first.exported, first.done), (3, false));
    client.close();
    let client = open(&name).await;
    let rest = client.snapshot("blobs", 3, false).await.unwrap();
    assert_eq!(rest, 4);
    // Done: calling again exports nothing; restart exports everything again.
    assert_eq!(client.snapshot("blobs", 3, false).await.unwrap(), 0);

    let rows = client.pending(100).await.unwrap();
    assert!(
        rows.iter()
            .all(|r| r.op == Op::Snapshot && r.store == "blobs")
    );
    let keys: Vec<f64> = rows.iter().map(|r| r.key.as_f64().unwrap()).collect();
    assert_eq!(keys, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(rows[6].value, JsValue::from(60));

    assert_eq!(client.snapshot("blobs", 100, true).await.unwrap(), 7);
    assert_eq!(client.depth().await.unwrap(), 14);
    client.close();
}
