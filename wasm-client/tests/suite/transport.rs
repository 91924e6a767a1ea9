//! The uploader's fault paths against a scripted fake bridge ([`super::fake_bridge`]): a
//! rejected batch is bisected down to the one bad record, which is set aside; `BAD_CRC` resends;
//! a connection lost mid-batch resends exactly what was not acked; out-of-order acks delete
//! exactly their rows; a page hide (`visibilitychange`, `pagehide`) cuts the backoff short.
//! Delivery through the real bridge into a real NiFi is the Playwright e2e run's job
//! (`cargo xtask wasm test`).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use s2s_bridge_protocol::reason;
use s2s_wasm::{Client, Config};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;
use web_sys::IdbRequest;

use super::fake_bridge::{Answer, FakeBridge, content_of, seq_of};
use super::{obj, todo_schema, unique};

fn config(bridge: &FakeBridge, batch_records: u32) -> Config {
    Config {
        bridge_url: Some(bridge.url()),
        batch_records,
        max_in_flight: 4,
        ack_timeout_ms: 10_000.0,
        backoff_base_ms: 5.0,
        backoff_cap_ms: 20.0,
        idle_poll_ms: 200.0,
        ..Config::default()
    }
}

async fn open_with(name: &str, config: Config) -> Client {
    Client::open(name, todo_schema(), config)
        .await
        .expect("open client")
}

/// Adds one todo per title, all in one transaction.
async fn write(client: &Client, titles: &[String]) {
    let tx = client.begin(&["todos"]).unwrap();
    for t in titles {
        let _ = tx
            .add("todos", &obj(&[("title", t.as_str().into())]), None)
            .unwrap();
    }
    let n = tx.commit().await.unwrap();
    assert_eq!(n as usize, titles.len());
    client.committed(n);
}

fn titles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r{i}")).collect()
}

/// The `title` of a record's JSON content.
fn title(content: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(content).expect("JSON content");
    v["title"].as_str().unwrap_or_default().to_owned()
}

/// How often the bridge acked each title *committed*.
fn delivered_titles(bridge: &FakeBridge) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for ff in bridge.delivered() {
        *m.entry(title(&content_of(&ff))).or_default() += 1;
    }
    m
}

fn once_each(titles: &[String]) -> BTreeMap<String, usize> {
    titles.iter().map(|t| (t.clone(), 1)).collect()
}

async fn sleep(ms: f64) {
    let p = Promise::new(&mut |resolve, _| {
        let set: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .unwrap()
            .into();
        set.call2(&JsValue::NULL, &resolve, &ms.into()).unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

async fn request(req: IdbRequest) -> JsValue {
    let p = Promise::new(&mut |resolve, reject| {
        req.set_onsuccess(Some(&resolve));
        req.set_onerror(Some(&reject));
    });
    JsFuture::from(p).await.expect("IndexedDB request");
    req.result().unwrap()
}

/// The set-aside store (`__s2s_rejected`, what the JS facade's `rejected()` reads): seq → record.
async fn rejected(client: &Client) -> Vec<(u64, JsValue)> {
    let tx = client
        .database()
        .transaction_with_str("__s2s_rejected")
        .unwrap();
    let os = tx.object_store("__s2s_rejected").unwrap();
    let keys: js_sys::Array = request(os.get_all_keys().unwrap()).await.into();
    let vals: js_sys::Array = request(os.get_all().unwrap()).await.into();
    keys.iter()
        .zip(vals.iter())
        .map(|(k, v)| (k.as_f64().unwrap() as u64, v))
        .collect()
}

/// Outbox seqs still pending.
async fn pending(client: &Client) -> Vec<u64> {
    client
        .pending(1000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect()
}

#[wasm_bindgen_test]
async fn a_rejected_batch_is_bisected_and_only_the_bad_record_set_aside() {
    let name = unique("reject");
    let bridge = FakeBridge::new(&name, |b| {
        if b.records.iter().any(|r| content_of(r).contains("poison")) {
            Answer::Reject(reason::DESTINATION_REJECTED)
        } else {
            Answer::Commit
        }
    });
    let client = open_with(&name, config(&bridge, 8)).await;
    let mut all = titles(8);
    all[5] = "poison".into();
    write(&client, &all).await;

    let set_aside = client.flush(20_000.0).await.expect("flush");
    assert_eq!(set_aside.len(), 1, "exactly one record set aside");
    let rejected = rejected(&client).await;
    assert_eq!(rejected.len(), 1, "one record in the set-aside store");
    let (seq, record) = &rejected[0];
    assert_eq!(*seq, set_aside[0]);
    let value = Reflect::get(record, &"v".into()).unwrap();
    assert_eq!(
        Reflect::get(&value, &"title".into()).unwrap().as_string(),
        Some("poison".into()),
        "the set-aside record is the bad one"
    );
    let why = Reflect::get(record, &"reason".into())
        .unwrap()
        .as_string()
        .unwrap_or_default();
    assert!(why.contains("DESTINATION_REJECTED"), "{why}");

    let mut good = all.clone();
    good.remove(5);
    assert_eq!(
        delivered_titles(&bridge),
        once_each(&good),
        "every other record delivered exactly once"
    );
    assert_eq!(client.depth().await.unwrap(), 0);
    let seen = bridge.seen();
    assert_eq!(seen[0].0.records.len(), 8, "first sent as one batch");
    assert!(
        seen.iter()
            .any(|(b, a)| b.records.len() == 1 && *a != Answer::Commit && b.seqs() == [*seq]),
        "bisected down to the single record: {:?}",
        seen.iter().map(|(b, a)| (b.seqs(), *a)).collect::<Vec<_>>()
    );
    assert_eq!(bridge.errors(), Vec::<String>::new());
    client.close();
}

#[wasm_bindgen_test]
async fn bad_crc_resends_the_batch_instead_of_setting_it_aside() {
    let name = unique("badcrc");
    // BAD_CRC for the first batch of each round; everything else is committed.
    let crc = Rc::new(Cell::new(true));
    let c = crc.clone();
    let bridge = FakeBridge::new(&name, move |_| {
        if c.replace(false) {
            Answer::BadCrc
        } else {
            Answer::Commit
        }
    });
    let client = open_with(&name, config(&bridge, 8)).await;

    // A batch of five: sent again whole (re-encoded), not bisected.
    let five = titles(5);
    write(&client, &five).await;
    let set_aside = client.flush(20_000.0).await.expect("flush");
    assert_eq!(set_aside, Vec::<u64>::new(), "nothing set aside");
    assert_eq!(delivered_titles(&bridge), once_each(&five));
    let seen = bridge.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].1, Answer::BadCrc);
    assert_eq!(seen[0].0.records.len(), 5);
    assert_eq!(
        seen[1].0.seqs(),
        seen[0].0.seqs(),
        "the BAD_CRC batch is sent again, whole"
    );

    // A single record: BAD_CRC is not a rejection of the record, so it is not set aside.
    crc.set(true);
    let one = vec!["single".to_owned()];
    write(&client, &one).await;
    let set_aside = client.flush(20_000.0).await.expect("flush");
    assert_eq!(
        set_aside,
        Vec::<u64>::new(),
        "a BAD_CRC record is not set aside"
    );
    assert!(rejected(&client).await.is_empty());
    let mut all = five.clone();
    all.extend(one);
    assert_eq!(delivered_titles(&bridge), once_each(&all));
    assert_eq!(client.depth().await.unwrap(), 0);
    assert_eq!(bridge.errors(), Vec::<String>::new());
    client.close();
}

#[wasm_bindgen_test]
async fn a_connection_lost_mid_batch_resends_exactly_what_was_not_acked() {
    let name = unique("lost");
    // First connection: hold batch 1, commit batch 2, drop the connection on batch 3.
    let n = Rc::new(Cell::new(0));
    let c = n.clone();
    let bridge = FakeBridge::new(&name, move |b| {
        if b.conn > 0 {
            return Answer::Commit;
        }
        c.set(c.get() + 1);
        match c.get() {
            1 => Answer::Hold,
            2 => Answer::Commit,
            _ => Answer::Close,
        }
    });
    let client = open_with(&name, config(&bridge, 2)).await;
    let all = titles(6);
    write(&client, &all).await;

    let set_aside = client.flush(20_000.0).await.expect("flush");
    assert!(set_aside.is_empty());
    assert_eq!(
        delivered_titles(&bridge),
        once_each(&all),
        "each record delivered exactly once"
    );
    let seen = bridge.seen();
    let on = |conn: usize| -> Vec<u64> {
        let mut v: Vec<u64> = seen
            .iter()
            .filter(|(b, _)| b.conn == conn)
            .flat_map(|(b, _)| b.seqs())
            .collect();
        v.sort_unstable();
        v
    };
    let first: Vec<_> = seen.iter().filter(|(b, _)| b.conn == 0).collect();
    assert_eq!(first.len(), 3, "three batches on the first connection");
    let mut unacked: Vec<u64> = first[0].0.seqs();
    unacked.extend(first[2].0.seqs());
    unacked.sort_unstable();
    assert_eq!(
        on(1),
        unacked,
        "the second connection carries the held and the cut-off batch, not the committed one"
    );
    assert_eq!(bridge.connections(), 2);
    assert_eq!(client.depth().await.unwrap(), 0);
    assert_eq!(bridge.errors(), Vec::<String>::new());
    client.close();
}

#[wasm_bindgen_test]
async fn out_of_order_acks_delete_exactly_their_rows() {
    let name = unique("order");
    let bridge = FakeBridge::new(&name, |_| Answer::Hold);
    let client = open_with(&name, config(&bridge, 2)).await;
    write(&client, &titles(8)).await;

    let deadline = js_sys::Date::now() + 10_000.0;
    while bridge.held().len() < 4 {
        assert!(
            js_sys::Date::now() < deadline,
            "four batches in flight, got {:?}",
            bridge.held()
        );
        sleep(10.0).await;
    }
    let batches: Vec<(u64, Vec<u64>)> = bridge
        .seen()
        .iter()
        .map(|(b, _)| (b.id, b.seqs()))
        .collect();
    assert_eq!(batches.len(), 4);
    let mut left: Vec<u64> = batches.iter().flat_map(|(_, s)| s.clone()).collect();
    assert_eq!(pending(&client).await, left);

    for i in [2, 0, 3, 1] {
        let (id, seqs) = &batches[i];
        bridge.release(*id, Answer::Commit);
        left.retain(|s| !seqs.contains(s));
        let deadline = js_sys::Date::now() + 10_000.0;
        loop {
            let now = pending(&client).await;
            if now.len() <= left.len() {
                assert_eq!(now, left, "the ack of batch {id} deletes exactly {seqs:?}");
                break;
            }
            assert!(
                js_sys::Date::now() < deadline,
                "ack of batch {id} not applied"
            );
            sleep(10.0).await;
        }
    }
    assert_eq!(bridge.seen().len(), 4, "nothing was sent twice");
    let mut delivered = bridge.delivered_seqs();
    delivered.sort_unstable();
    let mut all: Vec<u64> = batches.iter().flat_map(|(_, s)| s.clone()).collect();
    all.sort_unstable();
    assert_eq!(delivered, all);
    assert_eq!(bridge.errors(), Vec::<String>::new());
    client.close();
}

/// With the bridge unreachable the uploader backs off (here: most of 10 minutes); when the
/// bridge is back, `fire` (a page hide) must make it try again at once and deliver.
async fn page_hide_cuts_the_backoff_short(prefix: &str, fire: impl FnOnce()) {
    let name = unique(prefix);
    let bridge = FakeBridge::new(&name, |_| Answer::Commit);
    bridge.refuse(true);
    let mut cfg = config(&bridge, 100);
    cfg.backoff_base_ms = 600_000.0;
    cfg.backoff_cap_ms = 600_000.0;
    // Full jitter draws the wait from Math.random: pin it high so the wait is long for sure.
    let math = Reflect::get(&js_sys::global(), &"Math".into()).unwrap();
    let random = Reflect::get(&math, &"random".into()).unwrap();
    Reflect::set(
        &math,
        &"random".into(),
        &Function::new_no_args("return 0.99"),
    )
    .unwrap();

    let client = open_with(&name, cfg).await;
    let all = titles(3);
    write(&client, &all).await;
    let deadline = js_sys::Date::now() + 10_000.0;
    while bridge.refused() == 0 {
        assert!(js_sys::Date::now() < deadline, "no connection attempt");
        sleep(10.0).await;
    }
    bridge.refuse(false);
    // The uploader now waits out its backoff: nothing is delivered by itself.
    sleep(300.0).await;
    Reflect::set(&math, &"random".into(), &random).unwrap();
    assert!(
        bridge.delivered().is_empty() && bridge.connections() == 0,
        "the uploader should still be backing off"
    );

    fire();
    let deadline = js_sys::Date::now() + 10_000.0;
    while bridge.delivered().len() < all.len() {
        assert!(
            js_sys::Date::now() < deadline,
            "page hide did not flush: delivered {:?}",
            bridge.delivered_seqs()
        );
        sleep(10.0).await;
    }
    assert_eq!(delivered_titles(&bridge), once_each(&all));
    assert!(bridge.delivered().iter().all(|ff| seq_of(ff) != u64::MAX));
    let deadline = js_sys::Date::now() + 10_000.0;
    while client.depth().await.unwrap() != 0 {
        assert!(js_sys::Date::now() < deadline, "delivered rows not deleted");
        sleep(10.0).await;
    }
    assert_eq!(bridge.errors(), Vec::<String>::new());
    client.close();
}

#[wasm_bindgen_test]
async fn visibility_hidden_flushes_at_once() {
    page_hide_cuts_the_backoff_short("hidden", || {
        // As the browser does: `visibilityState` turns "hidden", then the event fires.
        let document = web_sys::window().unwrap().document().unwrap();
        let hidden = js_sys::Object::new();
        Reflect::set(&hidden, &"value".into(), &"hidden".into()).unwrap();
        Reflect::set(&hidden, &"configurable".into(), &JsValue::TRUE).unwrap();
        js_sys::Object::define_property(&document, &"visibilityState".into(), &hidden);
        document
            .dispatch_event(&web_sys::Event::new("visibilitychange").unwrap())
            .unwrap();
        Reflect::delete_property(&document, &"visibilityState".into()).unwrap();
    })
    .await;
}

#[wasm_bindgen_test]
async fn pagehide_flushes_at_once() {
    page_hide_cuts_the_backoff_short("pagehide", || {
        let window = web_sys::window().unwrap();
        window
            .dispatch_event(&web_sys::Event::new("pagehide").unwrap())
            .unwrap();
    })
    .await;
}
