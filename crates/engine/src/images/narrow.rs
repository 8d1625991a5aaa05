//! Which indexed images one DescribeImages call looks at: a superset of the images it
//! can return, taken from the index's secondary sets (see `index`) instead of every image
//! of the region, so that a name lookup, a name prefix (`debian-12-*`) or an owner
//! listing costs in proportion to what it finds, not to the region's size.
//!
//! Every restriction of the call that an index answers gives a candidate set: exact
//! `name` / `image-id` filters, wildcard `name` filters (a sorted range of names for a
//! literal prefix, else a pass over the names alone), `Owner.N`, `ExecutableBy.N`, and
//! what the caller may see at all (its own images, those granted to it or to `all`).
//! Filters AND, so any one of them will do: the smallest is taken. Each candidate is
//! then judged exactly as a full scan would judge it, so this changes the cost of a call,
//! never its answer.

use std::ops::Bound;

use crate::query::{Filter, Glob};

use super::index::{ById, IdSet, Indexed, RegionImages};

/// A resolved `Owner.N` value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// An account id (`self` resolved).
    Account(String),
    /// `amazon` or `aws-marketplace`.
    Alias(String),
}

/// What restricts one call.
pub(crate) struct Scope<'q> {
    /// The caller's account.
    pub caller: &'q str,
    /// `Owner.N`, resolved.
    pub owners: &'q [Owner],
    /// `ExecutableBy.N`, resolved (`all` or account ids).
    pub executable: &'q [String],
    /// `Filter.N`.
    pub filters: &'q [Filter],
}

/// Below this many candidates, a wildcard name filter is not worth a pass over the names.
const NAME_PASS_MIN: usize = 64;

/// The images of a call, in id order, without duplicates.
#[derive(Debug)]
pub(crate) enum Candidates<'a> {
    /// Every image of the region.
    All,
    /// The images of one index set.
    Set(&'a IdSet),
    /// These images, sorted by id, without duplicates.
    List(Vec<&'a ById>),
}

/// A union of index sets and single images; `size` counts duplicates.
#[derive(Default)]
struct Union<'a> {
    sets: Vec<&'a IdSet>,
    items: Vec<&'a ById>,
    size: usize,
}

impl<'a> Union<'a> {
    fn set(&mut self, set: Option<&'a IdSet>) {
        if let Some(s) = set {
            self.size += s.len();
            self.sets.push(s);
        }
    }

    fn item(&mut self, item: Option<&'a ById>) {
        if let Some(i) = item {
            self.size += 1;
            self.items.push(i);
        }
    }
}

fn wild(value: &str) -> bool {
    value.contains(['*', '?'])
}

/// The images matching a `name` filter with wildcards, or `None` once more than `bound`.
fn names_matching<'a>(r: &'a RegionImages, values: &[String], bound: usize) -> Option<Union<'a>> {
    let mut u = Union::default();
    for v in values {
        let Some(at) = v.find(['*', '?']) else {
            u.set(r.names.get(v.as_str()));
            continue;
        };
        // Every match starts with the literal text before the first wildcard.
        let prefix = &v[..at];
        let glob = Glob::new(v);
        let range = r
            .names
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix));
        for (_, set) in range.filter(|(name, _)| glob.matches(name)) {
            u.set(Some(set));
            if u.size > bound {
                return None;
            }
        }
    }
    Some(u)
}

/// Keeps the smaller of `best` and `u`.
fn offer<'a>(u: Union<'a>, best: &mut Option<Union<'a>>) {
    if best.as_ref().is_none_or(|b| u.size < b.size) {
        *best = Some(u);
    }
}

/// The images `scope` can return, or more.
pub(crate) fn candidates<'a>(r: &'a RegionImages, scope: &Scope<'_>) -> Candidates<'a> {
    let mut best: Option<Union<'a>> = None;
    for f in scope.filters {
        if f.values.iter().any(|v| wild(v)) {
            continue;
        }
        let mut u = Union::default();
        match f.name.as_str() {
            "name" => f.values.iter().for_each(|v| u.set(r.names.get(v.as_str()))),
            "image-id" => f
                .values
                .iter()
                .for_each(|v| u.item(r.images.get(v.as_str()))),
            _ => continue,
        }
        offer(u, &mut best);
    }
    if !scope.owners.is_empty() {
        let mut u = Union::default();
        for o in scope.owners {
            match o {
                Owner::Account(id) => u.set(r.owners.get(id)),
                Owner::Alias(alias) => u.set(r.aliases.get(alias)),
            }
        }
        offer(u, &mut best);
    }
    if !scope.executable.is_empty() {
        let mut u = Union::default();
        for e in scope.executable {
            if e != "all" {
                u.set(r.owners.get(e));
            }
            u.set(r.grantees.get(e));
        }
        offer(u, &mut best);
    }
    let mut visible = Union::default();
    visible.set(r.owners.get(scope.caller));
    visible.set(r.grantees.get(scope.caller));
    visible.set(r.grantees.get("all"));
    offer(visible, &mut best);
    for f in scope.filters.iter().filter(|f| f.name == "name") {
        let bound = best.as_ref().map_or(usize::MAX, |b| b.size);
        if bound > NAME_PASS_MIN
            && let Some(u) = names_matching(r, &f.values, bound)
        {
            offer(u, &mut best);
        }
    }
    let Some(u) = best else {
        return Candidates::All;
    };
    match (u.sets.as_slice(), u.items.is_empty()) {
        ([one], true) => Candidates::Set(one),
        // Sorting a union as large as the region costs more than looking at every image.
        _ if u.size >= r.images.len() / 2 => Candidates::All,
        (sets, _) => {
            let mut list: Vec<&ById> = sets.iter().flat_map(|s| s.iter()).collect();
            list.extend(u.items);
            // Runs already in id order: a stable sort merges them.
            list.sort();
            list.dedup_by(|a, b| a.id() == b.id());
            Candidates::List(list)
        }
    }
}

impl<'a> Candidates<'a> {
    /// Visits the candidates whose ids come after `token`, in id order, until `f`
    /// returns false.
    pub fn visit(
        &self,
        r: &'a RegionImages,
        token: Option<&str>,
        mut f: impl FnMut(&'a Indexed) -> bool,
    ) {
        let start = token.map_or(Bound::Unbounded, Bound::Excluded);
        let range = |set: &'a IdSet| set.range::<str, _>((start, Bound::Unbounded));
        match self {
            Candidates::All => {
                let _ = range(&r.images).all(|e| f(&e.0));
            }
            Candidates::Set(set) => {
                let _ = range(set).all(|e| f(&e.0));
            }
            Candidates::List(list) => {
                let from = token.map_or(0, |t| list.partition_point(|e| e.id() <= t));
                let _ = list[from..].iter().all(|e| f(&e.0));
            }
        }
    }
}
