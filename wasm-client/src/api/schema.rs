//! The application's database schema, as the client creates it, plus the client's own stores.

/// Store holding one row per captured write, keyed by an auto-increment `seq`.
pub const OUTBOX_STORE: &str = "__s2s_outbox";
/// Store for the client id and snapshot checkpoints.
pub const META_STORE: &str = "__s2s_meta";
/// Store for rows the bridge rejected for good: set aside, never silently dropped.
pub const REJECTED_STORE: &str = "__s2s_rejected";

/// The internal stores, created next to the application's.
pub const INTERNAL_STORES: [&str; 3] = [OUTBOX_STORE, META_STORE, REJECTED_STORE];

/// An index of an application store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// Index name.
    pub name: String,
    /// Key path of the index (a dotted path).
    pub key_path: String,
    /// `unique` flag.
    pub unique: bool,
    /// `multiEntry` flag.
    pub multi_entry: bool,
}

/// One application object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Store name.
    pub name: String,
    /// In-line key path, or `None` for out-of-line keys.
    pub key_path: Option<String>,
    /// Whether IndexedDB generates keys.
    pub auto_increment: bool,
    /// Indexes to create.
    pub indexes: Vec<IndexSpec>,
    /// Whether writes to this store are captured into the outbox (default true).
    pub watched: bool,
}

/// The application's schema: a version and its stores. Stores and indexes are created when
/// missing; nothing is ever deleted by the client (migrations that drop data are the app's call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Application schema version (IndexedDB version; the client bumps it when its own stores
    /// are missing from an existing database).
    pub version: u32,
    /// Application stores.
    pub stores: Vec<StoreSpec>,
}

impl Schema {
    /// Checks names before anything touches the database.
    pub fn validate(&self) -> Result<(), crate::api::error::Error> {
        use crate::api::error::Error;
        if self.version == 0 {
            return Err(Error::Invalid("schema version must be at least 1".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.stores {
            if s.name.is_empty() || s.name.starts_with("__s2s_") {
                return Err(Error::Invalid(format!(
                    "store name {:?} is empty or uses the reserved __s2s_ prefix",
                    s.name
                )));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(Error::Invalid(format!(
                    "store {:?} is declared twice",
                    s.name
                )));
            }
        }
        Ok(())
    }

    /// Whether writes to `store` are captured.
    pub fn is_watched(&self, store: &str) -> bool {
        self.stores.iter().any(|s| s.name == store && s.watched)
    }

    /// The spec of `store`.
    pub fn store(&self, store: &str) -> Option<&StoreSpec> {
        self.stores.iter().find(|s| s.name == store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str, watched: bool) -> StoreSpec {
        StoreSpec {
            name: name.into(),
            key_path: Some("id".into()),
            auto_increment: true,
            indexes: vec![],
            watched,
        }
    }

    #[test]
    fn validation() {
        let ok = Schema {
            version: 1,
            stores: vec![store("todos", true), store("cache", false)],
        };
        ok.validate().unwrap();
        assert!(ok.is_watched("todos"));
        assert!(!ok.is_watched("cache"));
        assert!(!ok.is_watched("missing"));
        let reserved = Schema {
            version: 1,
            stores: vec![store("__s2s_x", true)],
        };
        assert!(reserved.validate().is_err());
        let dup = Schema {
            version: 1,
            stores: vec![store("a", true), store("a", true)],
        };
        assert!(dup.validate().is_err());
        assert!(
            Schema {
                version: 0,
                stores: vec![]
            }
            .validate()
            .is_err()
        );
    }
}
