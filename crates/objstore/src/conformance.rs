//! The conformance suite every [`ObjectStore`] backend must pass.
//!
//! Backends call [`run_all`] from their own tests. The checks panic with a message naming
//! the property that failed, like ordinary test assertions.

use std::sync::Arc;

use crate::{ObjectKey, ObjectStore};

fn key(s: &str) -> ObjectKey {
    match ObjectKey::new(s) {
        Ok(k) => k,
        Err(e) => panic!("conformance suite uses an invalid key: {e}"),
    }
}

/// Runs every conformance check against `store`, which must start empty.
pub fn run_all<S: ObjectStore + 'static>(store: &S) {
    put_get_roundtrip(store);
    missing_objects(store);
    overwrite_replaces(store);
    delete_is_idempotent(store);
    list_by_prefix(store);
    put_many_is_visible(store);
    pending_names_are_visible(store);
    staged_objects_appear_only_when_installed(store);
    large_and_empty_objects(store);
}

/// Runs the checks that need shared ownership (concurrency).
pub fn run_concurrent(store: Arc<dyn ObjectStore>) {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let k = key(&format!("conc/{t}/{i}"));
                    let data = format!("{t}-{i}").into_bytes();
                    store
                        .put(&k, &data)
                        .unwrap_or_else(|e| panic!("concurrent put: {e}"));
                    assert_eq!(store.get(&k).ok(), Some(data), "concurrent read-back");
                }
            })
        })
        .collect();
    for t in threads {
        if t.join().is_err() {
            panic!("concurrent writer panicked");
        }
    }
    let listed = store.list("conc/").unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(listed.len(), 200, "every concurrent put is listed");
}

fn put_get_roundtrip(store: &dyn ObjectStore) {
    let k = key("rt/one");
    store
        .put(&k, b"payload")
        .unwrap_or_else(|e| panic!("put: {e}"));
    assert_eq!(
        store.get(&k).ok().as_deref(),
        Some(&b"payload"[..]),
        "get returns what put stored"
    );
    let meta = store.head(&k).unwrap_or_else(|e| panic!("head: {e}"));
    assert_eq!(meta.map(|m| m.size), Some(7), "head reports the size");
}

fn missing_objects(store: &dyn ObjectStore) {
    let k = key("missing/object");
    match store.get(&k) {
        Err(e) => assert!(
            e.is_not_found(),
            "get of a missing key is NotFound, got {e}"
        ),
        Ok(_) => panic!("get of a missing key succeeded"),
    }
    assert!(
        store
            .head(&k)
            .unwrap_or_else(|e| panic!("head: {e}"))
            .is_none(),
        "head of a missing key is None"
    );
    assert!(
        store
            .list("missing/")
            .unwrap_or_else(|e| panic!("list: {e}"))
            .is_empty()
    );
}

fn overwrite_replaces(store: &dyn ObjectStore) {
    let k = key("ow/x");
    store
        .put(&k, b"first version")
        .unwrap_or_else(|e| panic!("put: {e}"));
    store
        .put(&k, b"second")
        .unwrap_or_else(|e| panic!("put: {e}"));
    assert_eq!(
        store.get(&k).ok().as_deref(),
        Some(&b"second"[..]),
        "put replaces"
    );
    assert_eq!(
        store.list("ow/").map(|l| l.len()).ok(),
        Some(1),
        "one object after overwrite"
    );
}

fn delete_is_idempotent(store: &dyn ObjectStore) {
    let k = key("del/x");
    store.put(&k, b"x").unwrap_or_else(|e| panic!("put: {e}"));
    store.delete(&k).unwrap_or_else(|e| panic!("delete: {e}"));
    assert!(
        store.head(&k).ok().flatten().is_none(),
        "deleted object is gone"
    );
    store
        .delete(&k)
        .unwrap_or_else(|e| panic!("second delete must succeed: {e}"));
}

fn list_by_prefix(store: &dyn ObjectStore) {
    for k in ["ls/a/1", "ls/a/2", "ls/ab", "ls/b/1", "lsx"] {
        store
            .put(&key(k), k.as_bytes())
            .unwrap_or_else(|e| panic!("put: {e}"));
    }
    let names = |prefix: &str| -> Vec<String> {
        store
            .list(prefix)
            .unwrap_or_else(|e| panic!("list {prefix}: {e}"))
            .into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect()
    };
    assert_eq!(
        names("ls/a"),
        ["ls/a/1", "ls/a/2", "ls/ab"],
        "string-prefix semantics, sorted"
    );
    assert_eq!(names("ls/a/"), ["ls/a/1", "ls/a/2"]);
    assert_eq!(names("ls/"), ["ls/a/1", "ls/a/2", "ls/ab", "ls/b/1"]);
    assert_eq!(names("ls"), ["ls/a/1", "ls/a/2", "ls/ab", "ls/b/1", "lsx"]);
    assert!(names("").len() >= 5, "empty prefix lists everything");
    let sizes: Vec<u64> = store
        .list("ls/a/")
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .map(|m| m.size)
        .collect();
    assert_eq!(sizes, [6, 6], "listing reports sizes");
}

fn put_many_is_visible(store: &dyn ObjectStore) {
    let batch: Vec<_> = (0..10)
        .map(|i| (key(&format!("many/{i:02}")), vec![i as u8; i * 100]))
        .collect();
    store
        .put_many(&batch)
        .unwrap_or_else(|e| panic!("put_many: {e}"));
    for (k, data) in &batch {
        assert_eq!(
            store.get(k).ok().as_ref(),
            Some(data),
            "put_many object {k}"
        );
    }
}

fn pending_names_are_visible(store: &dyn ObjectStore) {
    let keys: Vec<_> = (0..5).map(|i| key(&format!("pending/{i}/x"))).collect();
    for k in &keys {
        store
            .put_name_pending(k, k.as_str().as_bytes())
            .unwrap_or_else(|e| panic!("put_name_pending: {e}"));
        assert_eq!(
            store.get(k).ok().as_deref(),
            Some(k.as_str().as_bytes()),
            "readable at once"
        );
    }
    store
        .persist_names(&keys)
        .unwrap_or_else(|e| panic!("persist_names: {e}"));
    assert_eq!(store.list("pending/").map(|l| l.len()).ok(), Some(5));
}

fn staged_objects_appear_only_when_installed(store: &dyn ObjectStore) {
    let keys: Vec<_> = (0..4).map(|i| key(&format!("staged/{i}/x"))).collect();
    let mut staged = Vec::new();
    for k in &keys {
        staged.push(
            store
                .stage(k, &[k.as_str().as_bytes()])
                .unwrap_or_else(|e| panic!("stage: {e}")),
        );
    }
    let dropped = store
        .stage(&key("staged/dropped"), &[b"never ", b"installed"])
        .unwrap_or_else(|e| panic!("stage: {e}"));
    assert_eq!(dropped.key(), &key("staged/dropped"));
    drop(dropped);
    store
        .install(staged, &[key("staged/0/x")])
        .unwrap_or_else(|e| panic!("install: {e}"));
    for k in &keys {
        assert_eq!(
            store.get(k).ok().as_deref(),
            Some(k.as_str().as_bytes()),
            "installed object readable"
        );
    }
    store
        .install(Vec::new(), &[])
        .unwrap_or_else(|e| panic!("empty install: {e}"));
    // A backend that stages in place (S3) has the dropped one stored; a local one not.
    let listed = store.list("staged/").map(|l| l.len()).unwrap_or(0);
    assert!(listed == 4 || listed == 5, "{listed} staged objects listed");

    // An object staged in parts is their concatenation, whatever their sizes.
    let big: Vec<u8> = (0..600 * 1024).map(|i: u32| (i % 253) as u8).collect();
    let parts: [&[u8]; 4] = [b"\x01", &big, b"", b"tail"];
    let staged = store
        .stage(&key("parts/one"), &parts)
        .unwrap_or_else(|e| panic!("stage parts: {e}"));
    store
        .install(vec![staged], &[])
        .unwrap_or_else(|e| panic!("install parts: {e}"));
    assert!(
        store.get(&key("parts/one")).ok() == Some(parts.concat()),
        "an object staged in parts reads back as their concatenation"
    );
}

fn large_and_empty_objects(store: &dyn ObjectStore) {
    let big: Vec<u8> = (0..(1 << 20) + 7).map(|i: u32| (i % 251) as u8).collect();
    store
        .put(&key("big/one"), &big)
        .unwrap_or_else(|e| panic!("put big: {e}"));
    assert!(
        store.get(&key("big/one")).ok() == Some(big),
        "1 MiB object round-trips"
    );
    store
        .put(&key("big/empty"), b"")
        .unwrap_or_else(|e| panic!("put empty: {e}"));
    assert_eq!(
        store.get(&key("big/empty")).ok(),
        Some(Vec::new()),
        "empty object round-trips"
    );
}
