//! The qcow2 writer: version 3, 64 KiB clusters, 16-bit refcounts, uncompressed.
//!
//! ```text
//! cluster 0          header (written last, in finish)
//! clusters 1..       data clusters and L2 tables, in the order the stream needs them
//!                    (an L2 table is reserved just before its first data cluster and
//!                    written when the stream leaves its 512 MiB)
//! then               L1 table, refcount table, refcount blocks (all written in finish)
//! ```
//!
//! Every cluster has refcount 1, and L1/L2 entries carry the "copied" flag, so
//! `qemu-img check` finds no leaks or errors.

use crate::Result;
use crate::writer::{Out, Sink};

const CLUSTER_BITS: u32 = 16;
const CS: u64 = 1 << CLUSTER_BITS;
const L2_ENTRIES: u64 = CS / 8;
const COPIED: u64 = 1 << 63;
const REFCOUNT_ORDER: u32 = 4;
const REFCOUNTS_PER_BLOCK: u64 = CS * 8 / (1 << REFCOUNT_ORDER);

pub(crate) struct Qcow2Sink {
    size: u64,
    l1: Vec<u64>,
    /// The L2 table being filled: (L1 index, its cluster offset, entries).
    l2: Option<(u64, u64, Vec<u64>)>,
    /// Next free cluster index.
    next: u64,
}

impl Qcow2Sink {
    pub fn new(size: u64) -> Qcow2Sink {
        let l1_len = size.div_ceil(CS * L2_ENTRIES).max(1);
        Qcow2Sink {
            size,
            l1: vec![0; l1_len as usize],
            l2: None,
            next: 1,
        }
    }

    fn alloc(&mut self) -> u64 {
        let at = self.next * CS;
        self.next += 1;
        at
    }

    fn flush_l2(&mut self, out: &Out) -> Result<()> {
        if let Some((_, at, entries)) = self.l2.take() {
            let mut buf = Vec::with_capacity(CS as usize);
            for e in entries {
                buf.extend_from_slice(&e.to_be_bytes());
            }
            out.write(at, &buf, "L2 table")?;
        }
        Ok(())
    }
}

impl Sink for Qcow2Sink {
    fn unit_size(&self) -> u64 {
        CS
    }

    fn put(&mut self, out: &Out, cluster: u64, data: &[u8]) -> Result<()> {
        let l1_index = cluster / L2_ENTRIES;
        if self.l2.as_ref().map(|l2| l2.0) != Some(l1_index) {
            self.flush_l2(out)?;
            let at = self.alloc();
            self.l1[l1_index as usize] = at | COPIED;
            self.l2 = Some((l1_index, at, vec![0; L2_ENTRIES as usize]));
        }
        let host = self.alloc();
        out.write(host, data, "data cluster")?;
        if let Some((_, _, entries)) = self.l2.as_mut() {
            entries[(cluster % L2_ENTRIES) as usize] = host | COPIED;
        }
        Ok(())
    }

    fn finish(&mut self, out: &Out) -> Result<()> {
        self.flush_l2(out)?;
        let l1_clusters = (self.l1.len() as u64 * 8).div_ceil(CS);
        let base = self.next;
        // Refcount blocks must count themselves: iterate to a fixed point.
        let mut blocks = 1u64;
        let (table_clusters, total) = loop {
            let table_clusters = (blocks * 8).div_ceil(CS);
            let total = base + l1_clusters + table_clusters + blocks;
            let need = total.div_ceil(REFCOUNTS_PER_BLOCK);
            if need <= blocks {
                break (table_clusters, total);
            }
            blocks = need;
        };
        let l1_offset = base * CS;
        let table_offset = (base + l1_clusters) * CS;
        let blocks_start = base + l1_clusters + table_clusters;

        let mut l1 = Vec::with_capacity((l1_clusters * CS) as usize);
        for e in &self.l1 {
            l1.extend_from_slice(&e.to_be_bytes());
        }
        out.write(l1_offset, &l1, "L1 table")?;

        let mut table = Vec::with_capacity((table_clusters * CS) as usize);
        for b in 0..blocks {
            table.extend_from_slice(&((blocks_start + b) * CS).to_be_bytes());
        }
        out.write(table_offset, &table, "refcount table")?;
        for b in 0..blocks {
            let mut block = vec![0u8; CS as usize];
            let first = b * REFCOUNTS_PER_BLOCK;
            let n = total.saturating_sub(first).min(REFCOUNTS_PER_BLOCK);
            for i in 0..n as usize {
                block[i * 2..i * 2 + 2].copy_from_slice(&1u16.to_be_bytes());
            }
            out.write((blocks_start + b) * CS, &block, "refcount block")?;
        }

        let mut h = vec![0u8; 104];
        h[0..4].copy_from_slice(&super::MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
        h[24..32].copy_from_slice(&self.size.to_be_bytes());
        h[36..40].copy_from_slice(&(self.l1.len() as u32).to_be_bytes());
        h[40..48].copy_from_slice(&l1_offset.to_be_bytes());
        h[48..56].copy_from_slice(&table_offset.to_be_bytes());
        h[56..60].copy_from_slice(&(table_clusters as u32).to_be_bytes());
        h[96..100].copy_from_slice(&REFCOUNT_ORDER.to_be_bytes());
        h[100..104].copy_from_slice(&104u32.to_be_bytes());
        // Followed by zeros: the end-of-extensions marker.
        out.write(0, &h, "header")?;
        out.set_len(total * CS)
    }
}
