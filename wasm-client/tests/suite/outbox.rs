//! The transactional outbox: capture iff commit, order, seq across reopen, binary values.

use js_sys::{Promise, Uint8Array};
use s2s_wasm::Op;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

use super::{obj, open, unique};

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

#[wasm_bindgen_test]
async fn aborted_transaction_leaves_no_outbox_rows() {
    let name = unique("abort");
    let client = open(&name).await;

    // Explicit abort after several writes.
    let tx = client.begin(&["todos", "blobs"]).unwrap();
    let p1 = tx
        .put("todos", &obj(&[("title", "a".into())]), None)
        .unwrap();
    let p2 = tx
        .put("blobs", &JsValue::from_str("x"), Some(&"k1".into()))
        .unwrap();
    let _ = settle(p1).await;
    let _ = settle(p2).await;
    tx.abort();
    drop(tx);

    // Abort caused by a failing write (add of an existing key) after a successful one.
    let tx = client.begin(&["blobs"]).unwrap();
    let _ = tx
        .put("blobs", &JsValue::from_str("v"), Some(&"dup".into()))
        .unwrap();
    let bad = tx
        .add("blobs", &JsValue::from_str("w"), Some(&"dup".into()))
        .unwrap();
    assert!(
        settle(bad).await.is_err(),
        "add of an existing key must fail"
    );
    let outcome = tx.commit().await;
    assert!(
        matches!(outcome, Err(s2s_wasm::Error::Aborted(_))),
        "{outcome:?}"
    );

    // A dropped, never-committed transaction aborts too.
    {
        let tx = client.begin(&["todos"]).unwrap();
        let _ = tx
            .put("todos", &obj(&[("title", "dropped".into())]), None)
            .unwrap();
    }

    assert_eq!(
        client.depth().await.unwrap(),
        0,
        "no outbox row may survive an abort"
    );
    // And no data either: capture and data are one unit.
    let tx = client.begin(&["blobs"]).unwrap();
    assert!(tx.get("blobs", &"dup".into()).await.unwrap().is_undefined());
    assert!(tx.get("blobs", &"k1".into()).await.unwrap().is_undefined());
    tx.commit().await.unwrap();
    client.close();
}

#[wasm_bindgen_test]
async fn committed_transaction_leaves_one_row_per_write_in_order() {
    let name = unique("commit");
    let client = open(&name).await;
    let tx = client.begin(&["todos", "blobs", "local"]).unwrap();
    let k1 = tx
        .add("todos", &obj(&[("title", "first".into())]), None)
        .unwrap();
    let k2 = tx
        .put("blobs", &JsValue::from_str("b"), Some(&"key-b".into()))
        .unwrap();
    // Not watched: written, not captured.
    let _ = tx
        .put("local", &JsValue::from_str("c"), Some(&"ui-state".into()))
        .unwrap();
    let k3 = tx
        .put("todos", &obj(&[("title", "second".into())]), None)
        .unwrap();
    let _ = tx.delete("blobs", &"key-b".into()).unwrap();
    let _ = tx.clear("todos").unwrap();
    let k1 = settle(k1).await.unwrap();
    let k3 = settle(k3).await.unwrap();
    assert_eq!(settle(k2).await.unwrap(), JsValue::from_str("key-b"));
    assert_eq!(tx.commit().await.unwrap(), 5);

    let rows = client.pending(100).await.unwrap();
    let got: Vec<(String, Op)> = rows.iter().map(|r| (r.store.clone(), r.op)).collect();
    assert_eq!(
        got,
        vec![
            ("todos".into(), Op::Add),
            ("blobs".into(), Op::Put),
            ("todos".into(), Op::Put),
            ("blobs".into(), Op::Delete),
            ("todos".into(), Op::Clear),
        ]
    );
    assert!(
        rows.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq strictly increasing"
    );
    assert_eq!(rows[0].key, k1);
    assert_eq!(rows[2].key, k3);
    assert_eq!(rows[3].key, JsValue::from_str("key-b"));
    // The generated in-line key is on the captured record too.
    assert_eq!(
        js_sys::Reflect::get(&rows[0].value, &"id".into()).unwrap(),
        k1
    );

    // The FlowFile mapping of those rows.
    let ff = client.flowfile(&rows[0]).await.unwrap();
    let attr = |ff: &s2s_wasm::FlowFile, k: &str| {
        ff.attributes
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(attr(&ff, "idb.database").as_deref(), Some(name.as_str()));
    assert_eq!(attr(&ff, "idb.store").as_deref(), Some("todos"));
    assert_eq!(attr(&ff, "idb.op").as_deref(), Some("add"));
    assert_eq!(attr(&ff, "idb.seq"), Some(rows[0].seq.to_string()));
    assert_eq!(
        attr(&ff, "idb.key"),
        Some(format!("{}", k1.as_f64().unwrap()))
    );
    assert_eq!(
        attr(&ff, "idb.client.id").as_deref(),
        Some(client.client_id())
    );
    assert_eq!(attr(&ff, "mime.type").as_deref(), Some("application/json"));
    assert_eq!(
        attr(&ff, "filename"),
        Some(format!("{name}.todos.{}.json", rows[0].seq))
    );
    assert!(attr(&ff, "idb.timestamp").unwrap().parse::<u64>().unwrap() > 1_600_000_000_000);
    let json: serde_json::Value = serde_json::from_slice(&ff.content).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"title": "first", "id": k1.as_f64().unwrap() as u64})
    );
    let del = client.flowfile(&rows[3]).await.unwrap();
    assert_eq!(&del.content[..], b"null");
    assert_eq!(attr(&del, "idb.key").as_deref(), Some("key-b"));
    let clear = client.flowfile(&rows[4]).await.unwrap();
    assert_eq!(attr(&clear, "idb.key"), None);
    client.close();
}

#[wasm_bindgen_test]
async fn seq_is_monotonic_across_reopen_and_delivery() {
    let name = unique("seq");
    let client = open(&name).await;
    let id = client.client_id().to_owned();
    for i in 0..3 {
        let tx = client.begin(&["blobs"]).unwrap();
        let _ = tx
            .put("blobs", &JsValue::from(i), Some(&JsValue::from(i)))
            .unwrap();
        tx.commit().await.unwrap();
    }
    let before = client.pending(10).await.unwrap();
    let last_before = before.last().unwrap().seq;
    // Simulate delivery of everything: the outbox is empty afterwards.
    let tx = client.begin(&["blobs"]).unwrap();
    tx.commit().await.unwrap();
    remove_all(&client).await;
    assert_eq!(client.depth().await.unwrap(), 0);
    client.close();

    // Reopen (as after a reload): same client id, and seq continues above every earlier one.
    let client = open(&name).await;
    assert_eq!(
        client.client_id(),
        id,
        "client id is stable for the profile"
    );
    let tx = client.begin(&["blobs"]).unwrap();
    let _ = tx
        .put("blobs", &JsValue::from(9), Some(&JsValue::from(9)))
        .unwrap();
    tx.commit().await.unwrap();
    let after = client.pending(10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert!(
        after[0].seq > last_before,
        "{} must exceed {last_before}",
        after[0].seq
    );
    client.close();
}

/// Deletes every outbox row the way the uploader does after an ack.
async fn remove_all(client: &s2s_wasm::Client) {
    let rows = client.pending(1000).await.unwrap();
    let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
    s2s_wasm::api::outbox::remove(client.database(), &seqs)
        .await
        .unwrap();
}

#[wasm_bindgen_test]
async fn binary_values_round_trip() {
    let name = unique("binary");
    let client = open(&name).await;
    let bytes: Vec<u8> = (0..=255u8).chain([0, 0xff, 0x80]).collect();
    let typed = Uint8Array::from(&bytes[..]);
    let buffer = typed.buffer();
    // A view into the middle of a larger buffer: only the view's bytes count.
    let view = Uint8Array::new_with_byte_offset_and_length(&buffer, 10, 20);
    let parts = js_sys::Array::of1(&typed);
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("image/png");
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).unwrap();
    let nested = obj(&[
        ("name", "n".into()),
        ("data", Uint8Array::from(&b"hi!"[..]).into()),
    ]);

    let tx = client.begin(&["blobs"]).unwrap();
    for (k, v) in [
        ("typed", typed.clone().into()),
        ("buffer", buffer.clone().into()),
        ("view", view.into()),
        ("blob", blob.into()),
        ("nested", nested),
    ] {
        let _ = tx.put("blobs", &v, Some(&k.into())).unwrap();
    }
    tx.commit().await.unwrap();

    let rows = client.pending(10).await.unwrap();
    assert_eq!(rows.len(), 5);
    let mut ffs = Vec::new();
    for r in &rows {
        ffs.push(client.flowfile(r).await.unwrap());
    }
    let mime = |i: usize| {
        ffs[i]
            .attributes
            .iter()
            .find(|(k, _)| k == "mime.type")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(&ffs[0].content[..], &bytes[..]);
    assert_eq!(mime(0), "application/octet-stream");
    assert_eq!(&ffs[1].content[..], &bytes[..]);
    assert_eq!(&ffs[2].content[..], &bytes[10..30]);
    assert_eq!(&ffs[3].content[..], &bytes[..]);
    assert_eq!(mime(3), "image/png");
    assert!(
        ffs[3]
            .attributes
            .iter()
            .any(|(k, v)| k == "filename" && v.ends_with(".bin"))
    );
    let json: serde_json::Value = serde_json::from_slice(&ffs[4].content).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "n", "data": {"$base64": "aGkh"}})
    );

    // The data store holds the same bytes (read back through IndexedDB).
    let tx = client.begin(&["blobs"]).unwrap();
    let stored = tx.get("blobs", &"typed".into()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(Uint8Array::new(&stored).to_vec(), bytes);
    client.close();
}
