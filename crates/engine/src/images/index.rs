//! The in-memory image index: every image of a region, parsed, with its launch
//! permissions and tags, so that DescribeImages over tens of thousands of images neither
//! queries nor parses the catalog on every call, and RegisterImage checks name
//! uniqueness without a scan.
//!
//! Layout of one region ([`RegionImages`]): each image is one shared [`Indexed`] entry
//! (behind an `Arc`), listed in id order by the main set and by secondary indexes that
//! let DescribeImages look at only the images that can match (see `narrow`):
//!
//! ```text
//! images    {ById}                    every image, by id
//! names     name     -> {ById}        sorted by name: exact names and name prefixes
//! owners    account  -> {ById}        Owner.N = account id / self, visibility
//! aliases   alias    -> {ById}        Owner.N = amazon / aws-marketplace
//! grantees  grantee  -> {ById}        launch permissions (`all` or an account id)
//! ```
//!
//! The catalog stays the truth. A region is loaded on first use; after any change to an
//! image (row, launch permissions, tags), [`Cloud::refresh_image`] re-reads that image
//! from the catalog while holding the index's write lock, so the index ends in the state
//! of the last change whatever the interleaving of concurrent writers. Images written to
//! the catalog behind the engine's back (an operator import while the server runs) are
//! noticed through the catalog's `data_version` (SQLite's, or PostgreSQL notifications),
//! which changes only when another connection or node commits: the index is then dropped
//! and reloaded on next use.

use std::borrow::Borrow;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use catalog::ResourceRow;

use crate::{Cloud, Ec2Result};

use super::{ImageView, KIND, LAUNCH_PERMISSION, doc_of};

/// One indexed image: its view (with all its tags) and its launch permission grants.
#[derive(Debug)]
pub(crate) struct Indexed {
    /// The image as its owner sees it.
    pub view: ImageView,
    /// Launch permission grantees (`all` or account ids).
    pub grants: Vec<String>,
}

/// An indexed image, ordered (and looked up, through `Borrow<str>`) by its id, so that
/// every index shares one entry per image and lists images in id order.
#[derive(Clone, Debug)]
pub(crate) struct ById(pub Arc<Indexed>);

impl ById {
    /// The image id.
    pub fn id(&self) -> &str {
        &self.0.view.id
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.id().cmp(other.id())
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.id()
    }
}

/// Images in id order.
pub(crate) type IdSet = BTreeSet<ById>;

/// The images of one region.
#[derive(Debug, Default)]
pub(crate) struct RegionImages {
    /// Every image, by id.
    pub images: IdSet,
    /// Name → the images (of any owner) with that name, in name order.
    pub names: BTreeMap<String, IdSet>,
    /// Owner account → its images.
    pub owners: HashMap<String, IdSet>,
    /// Owner alias (`amazon`, ...) → the images with that alias.
    pub aliases: HashMap<String, IdSet>,
    /// Launch permission grantee (`all` or an account id) → the images granted to it.
    pub grantees: HashMap<String, IdSet>,
}

/// A map of key → [`IdSet`] (the secondary indexes).
trait SetMap {
    /// Adds `entry` to the set of `key`.
    fn link(&mut self, key: &str, entry: &ById);
    /// Removes image `id` from the set of `key`, dropping the set once empty.
    fn unlink(&mut self, key: &str, id: &str);
}

macro_rules! set_map {
    ($map:ty) => {
        impl SetMap for $map {
            fn link(&mut self, key: &str, entry: &ById) {
                self.entry(key.to_string())
                    .or_default()
                    .insert(entry.clone());
            }

            fn unlink(&mut self, key: &str, id: &str) {
                if let Some(set) = self.get_mut(key) {
                    set.remove(id);
                    if set.is_empty() {
                        self.remove(key);
                    }
                }
            }
        }
    };
}

set_map!(HashMap<String, IdSet>);
set_map!(BTreeMap<String, IdSet>);

impl RegionImages {
    fn insert(&mut self, entry: Indexed) {
        self.remove(&entry.view.id);
        let e = ById(Arc::new(entry));
        let v = &e.0.view;
        self.names.link(&v.doc.name, &e);
        self.owners.link(&v.owner_id, &e);
        if let Some(alias) = &v.doc.owner_alias {
            self.aliases.link(alias, &e);
        }
        for g in &e.0.grants {
            self.grantees.link(g, &e);
        }
        self.images.insert(e);
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.images.take(id) else {
            return;
        };
        let v = &old.0.view;
        self.names.unlink(&v.doc.name, id);
        self.owners.unlink(&v.owner_id, id);
        if let Some(alias) = &v.doc.owner_alias {
            self.aliases.unlink(alias, id);
        }
        for g in &old.0.grants {
            self.grantees.unlink(g, id);
        }
    }

    /// The image with this id.
    pub fn get(&self, id: &str) -> Option<&Indexed> {
        self.images.get(id).map(|e| &*e.0)
    }

    /// The id of `owner`'s image named `name`, if any.
    pub fn named(&self, owner: &str, name: &str) -> Option<String> {
        self.names
            .get(name)?
            .iter()
            .find(|e| e.0.view.owner_id == owner)
            .map(|e| e.id().to_string())
    }
}

/// The index of every loaded region.
#[derive(Debug, Default)]
pub struct ImageIndex {
    regions: RwLock<HashMap<String, RegionImages>>,
    /// The catalog's `data_version` when the index was last known to be current.
    catalog_version: AtomicI64,
}

impl ImageIndex {
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, RegionImages>> {
        self.regions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, RegionImages>> {
        self.regions.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry(
    row: &ResourceRow,
    grants: Vec<String>,
    tags: Vec<(String, String)>,
) -> Ec2Result<Indexed> {
    Ok(Indexed {
        view: ImageView {
            id: row.id.clone(),
            owner_id: row.account_id.clone(),
            state: row.state.clone(),
            public: grants.iter().any(|g| g == "all"),
            doc: doc_of(row)?,
            tags,
            allowed: None,
        },
        grants,
    })
}

impl Cloud {
    /// Runs `f` over a region's images, loading the region from the catalog first if
    /// needed.
    pub(crate) fn with_region_images<R>(
        &self,
        region: &str,
        f: impl FnOnce(&RegionImages) -> R,
    ) -> Ec2Result<R> {
        let version = self.catalog.data_version()?;
        if self
            .image_index
            .catalog_version
            .swap(version, Ordering::SeqCst)
            != version
        {
            // Another process changed the catalog (or this is the first use): start over.
            self.image_index.write().clear();
        }
        {
            let regions = self.image_index.read();
            if let Some(r) = regions.get(region) {
                return Ok(f(r));
            }
        }
        let mut regions = self.image_index.write();
        if !regions.contains_key(region) {
            let mut grants = self.catalog.all_permissions(LAUNCH_PERMISSION)?;
            let mut tags = self.catalog.all_tags()?;
            let mut loaded = RegionImages::default();
            for row in self.catalog.resources(KIND, region)? {
                let g = grants.remove(&row.id).unwrap_or_default();
                let t = tags.remove(&row.id).unwrap_or_default();
                loaded.insert(entry(&row, g, t)?);
            }
            tracing::debug!(region, images = loaded.images.len(), "image index loaded");
            regions.insert(region.to_string(), loaded);
        }
        drop(regions);
        // Regions are never unloaded, so it is still there.
        let regions = self.image_index.read();
        match regions.get(region) {
            Some(r) => Ok(f(r)),
            None => Ok(f(&RegionImages::default())),
        }
    }

    /// Re-reads one image (row, grants, tags) from the catalog into the index, or drops
    /// it if it is gone. Call after every change to an image.
    pub(crate) fn refresh_image(&self, id: &str) -> Ec2Result<()> {
        let mut regions = self.image_index.write();
        let row = self.catalog.resource(id)?.filter(|r| r.kind == KIND);
        for r in regions.values_mut() {
            r.remove(id);
        }
        if let Some(row) = row
            && let Some(r) = regions.get_mut(&row.region)
        {
            let grants = self.catalog.permissions(id, LAUNCH_PERMISSION)?;
            let tags = self.catalog.tags(id)?;
            r.insert(entry(&row, grants, tags)?);
        }
        Ok(())
    }
}
