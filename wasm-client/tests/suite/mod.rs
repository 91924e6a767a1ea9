//! Shared helpers; one module per area.

mod batch;
mod fake_bridge;
mod outbox;
mod ownership;
mod snapshot;
mod transport;

use s2s_wasm::{Client, Config, Schema, StoreSpec};

/// A database name no other test uses (tests in one binary share the browser profile).
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", js_sys::Math::random().to_bits())
}

pub(crate) fn todo_schema() -> Schema {
    Schema {
        version: 1,
        stores: vec![
            StoreSpec {
                name: "todos".into(),
                key_path: Some("id".into()),
                auto_increment: true,
                indexes: vec![],
                watched: true,
            },
            StoreSpec {
                name: "blobs".into(),
                key_path: None,
                auto_increment: false,
                indexes: vec![],
                watched: true,
            },
            StoreSpec {
                name: "local".into(),
                key_path: None,
                auto_increment: false,
                indexes: vec![],
                watched: false,
            },
        ],
    }
}

pub(crate) async fn open(name: &str) -> Client {
    Client::open(name, todo_schema(), Config::default())
        .await
        .expect("open client")
}

pub(crate) fn obj(pairs: &[(&str, wasm_bindgen::JsValue)]) -> wasm_bindgen::JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        js_sys::Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}
