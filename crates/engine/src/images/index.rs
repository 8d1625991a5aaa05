//! The in-memory image index: every image of a region, parsed, with its launch
//! permissions and tags, so that DescribeImages over tens of thousands of images neither
//! queries nor parses the catalog on every call, and RegisterImage checks name
//! uniqueness in O(1).
//!
//! The catalog stays the truth. A region is loaded on first use; after any change to an
//! image (row, launch permissions, tags), [`Cloud::refresh_image`] re-reads that image
//! from the catalog while holding the index's write lock, so the index ends in the state
//! of the last change whatever the interleaving of concurrent writers. Images written to
//! the catalog behind the engine's back (an operator import while the server runs) are
//! noticed through SQLite's `data_version`, which changes only when another connection
//! commits: the index is then dropped and reloaded on next use.

use std::collections::{BTreeMap, HashMap};
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

/// The images of one region.
#[derive(Debug, Default)]
pub(crate) struct RegionImages {
    /// By id.
    pub images: BTreeMap<String, Arc<Indexed>>,
    /// Name → ids of the images (of any owner) with that name.
    pub names: HashMap<String, Vec<String>>,
}

impl RegionImages {
    fn insert(&mut self, entry: Indexed) {
        self.remove(&entry.view.id);
        self.names
            .entry(entry.view.doc.name.clone())
            .or_default()
            .push(entry.view.id.clone());
        self.images.insert(entry.view.id.clone(), Arc::new(entry));
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.images.remove(id)
            && let Some(ids) = self.names.get_mut(&old.view.doc.name)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.names.remove(&old.view.doc.name);
            }
        }
    }

    /// The id of `owner`'s image named `name`, if any.
    pub fn named(&self, owner: &str, name: &str) -> Option<String> {
        self.names.get(name)?.iter().find_map(|id| {
            self.images
                .get(id)
                .filter(|i| i.view.owner_id == owner)
                .map(|_| id.clone())
        })
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
