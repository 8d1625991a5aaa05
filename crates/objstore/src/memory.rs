//! An in-memory [`ObjectStore`] for tests.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use crate::{ObjectKey, ObjectMeta, ObjectStore, StoreError};

/// Objects in a `BTreeMap` behind a mutex. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<ObjectKey, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<ObjectKey, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated: every
        // operation is a single map call.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ObjectStore for MemoryStore {
    fn reads_are_local(&self) -> bool {
        true
    }

    fn put(&self, key: &ObjectKey, data: &[u8]) -> Result<(), StoreError> {
        self.objects().insert(key.clone(), data.to_vec());
        Ok(())
    }

    fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound { key: key.clone() })
    }

    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        Ok(self.objects().get(key).map(|data| ObjectMeta {
            key: key.clone(),
            size: data.len() as u64,
        }))
    }

    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.objects().remove(key);
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        Ok(self
            .objects()
            .iter()
            .filter(|(key, _)| key.as_str().starts_with(prefix))
            .map(|(key, data)| ObjectMeta {
                key: key.clone(),
                size: data.len() as u64,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        crate::conformance::run_all(&super::MemoryStore::new());
        crate::conformance::run_concurrent(std::sync::Arc::new(super::MemoryStore::new()));
    }
}
