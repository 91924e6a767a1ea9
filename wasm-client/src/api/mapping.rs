//! Outbox row → FlowFile: the mapping documented in the crate README.
//!
//! * content: the record as JSON (`application/json`); a record that *is* binary (`Blob`/`File`,
//!   `ArrayBuffer`, typed array, `DataView`) goes as its raw bytes, with the Blob's type or
//!   `application/octet-stream` as `mime.type`; binary values nested in a record become
//!   `{"$base64": "..."}`; delete and clear carry `null`.
//! * attributes: the static attributes, then `idb.*`, `mime.type`, `filename` (which win over
//!   static attributes of the same name).

use base64::Engine as _;
use bytes::Bytes;
use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::{JsCast, JsValue, prelude::Closure};
use wasm_bindgen_futures::JsFuture;

use crate::api::codec::FlowFile;
use crate::api::error::Error;
use crate::api::outbox::{Op, OutboxRow};

/// Per-client inputs of the mapping.
#[derive(Debug)]
pub struct Mapper {
    /// `idb.database`.
    pub database: String,
    /// `idb.client.id`.
    pub client_id: String,
    /// Attributes added to every FlowFile.
    pub static_attributes: Vec<(String, String)>,
    replacer: Closure<dyn FnMut(JsValue, JsValue) -> JsValue>,
}

const JSON_MIME: &str = "application/json";
const BINARY_MIME: &str = "application/octet-stream";

impl Mapper {
    /// A mapper for one client.
    pub fn new(
        database: String,
        client_id: String,
        static_attributes: Vec<(String, String)>,
    ) -> Self {
        // JSON.stringify would turn typed arrays into {"0":..} objects and ArrayBuffers into {}:
        // the replacer keeps their bytes instead.
        let replacer =
            Closure::<dyn FnMut(JsValue, JsValue) -> JsValue>::new(|_key, value: JsValue| {
                match binary_bytes(&value) {
                    Some(bytes) => {
                        let o = js_sys::Object::new();
                        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                        let _ = js_sys::Reflect::set(&o, &"$base64".into(), &b64.into());
                        o.into()
                    }
                    None => value,
                }
            });
        Self {
            database,
            client_id,
            static_attributes,
            replacer,
        }
    }

    /// Maps one row. Async only because a `Blob`'s bytes must be read.
    pub async fn flowfile(&self, row: &OutboxRow) -> Result<FlowFile, Error> {
        let (content, mime) = match row.op {
            Op::Delete | Op::Clear => (Bytes::from_static(b"null"), JSON_MIME.to_owned()),
            _ => self.content(&row.value).await?,
        };
        let ext = if mime == JSON_MIME { "json" } else { "bin" };
        let mut attributes = self.static_attributes.clone();
        let mut set = |k: &str, v: String| {
            if let Some(slot) = attributes.iter_mut().find(|(key, _)| key == k) {
                slot.1 = v;
            } else {
                attributes.push((k.to_owned(), v));
            }
        };
        set("idb.database", self.database.clone());
        set("idb.store", row.store.clone());
        if row.op != Op::Clear {
            set("idb.key", key_string(&row.key));
        }
        set("idb.op", row.op.as_str().to_owned());
        set("idb.seq", row.seq.to_string());
        set("idb.client.id", self.client_id.clone());
        set("idb.timestamp", format!("{}", row.timestamp as u64));
        set("mime.type", mime);
        set(
            "filename",
            format!("{}.{}.{}.{ext}", self.database, row.store, row.seq),
        );
        Ok(FlowFile {
            attributes,
            content,
        })
    }

    async fn content(&self, value: &JsValue) -> Result<(Bytes, String), Error> {
        if let Some(bytes) = binary_bytes(value) {
            return Ok((Bytes::from(bytes), BINARY_MIME.to_owned()));
        }
        if let Some(blob) = value.dyn_ref::<web_sys::Blob>() {
            let buf = JsFuture::from(blob.array_buffer())
                .await
                .map_err(|e| Error::js(&e))?;
            let bytes = Uint8Array::new(&buf).to_vec();
            let ty = blob.type_();
            return Ok((
                Bytes::from(bytes),
                if ty.is_empty() {
                    BINARY_MIME.to_owned()
                } else {
                    ty
                },
            ));
        }
        if contains_blob(value, 0) {
            return Err(Error::Invalid(
                "a Blob nested inside a record cannot be serialized: store it as its own record or as an ArrayBuffer".into(),
            ));
        }
        let json =
            js_sys::JSON::stringify_with_replacer(value, self.replacer.as_ref().unchecked_ref())
                .map_err(|e| {
                    Error::Invalid(format!(
                        "record is not JSON-serializable: {}",
                        crate::api::error::describe(&e)
                    ))
                })?;
        // `undefined` (and functions) stringify to undefined: send JSON null.
        let text = json.as_string().unwrap_or_else(|| "null".to_owned());
        Ok((Bytes::from(text.into_bytes()), JSON_MIME.to_owned()))
    }
}

/// Bytes of an ArrayBuffer or any ArrayBuffer view (typed arrays, DataView), else `None`.
fn binary_bytes(value: &JsValue) -> Option<Vec<u8>> {
    if let Some(buf) = value.dyn_ref::<ArrayBuffer>() {
        return Some(Uint8Array::new(buf).to_vec());
    }
    if ArrayBuffer::is_view(value) {
        let buffer = js_sys::Reflect::get(value, &"buffer".into()).ok()?;
        let offset = js_sys::Reflect::get(value, &"byteOffset".into())
            .ok()?
            .as_f64()? as u32;
        let len = js_sys::Reflect::get(value, &"byteLength".into())
            .ok()?
            .as_f64()? as u32;
        return Some(Uint8Array::new_with_byte_offset_and_length(&buffer, offset, len).to_vec());
    }
    None
}

/// Looks for Blobs in plain objects and arrays (bounded depth: records are data, not graphs).
fn contains_blob(value: &JsValue, depth: u32) -> bool {
    if depth > 32 || !value.is_object() || binary_bytes(value).is_some() {
        return false;
    }
    if value.is_instance_of::<web_sys::Blob>() {
        return depth > 0;
    }
    if let Some(arr) = value.dyn_ref::<js_sys::Array>() {
        return arr.iter().any(|v| contains_blob(&v, depth + 1));
    }
    if value.is_instance_of::<js_sys::Date>() {
        return false;
    }
    js_sys::Object::values(value.unchecked_ref())
        .iter()
        .any(|v| contains_blob(&v, depth + 1))
}

/// `idb.key`: strings as they are, binary keys as base64, everything else (numbers, dates,
/// arrays) as JSON.
pub fn key_string(key: &JsValue) -> String {
    if let Some(s) = key.as_string() {
        return s;
    }
    if let Some(bytes) = binary_bytes(key) {
        return base64::engine::general_purpose::STANDARD.encode(bytes);
    }
    js_sys::JSON::stringify(key)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_default()
}
