//! A fixed-length bitmap, one bit per block (bit `i` is bit `i % 8` of byte `i / 8`).

/// One bit per block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    len: u64,
    bytes: Vec<u8>,
}

impl Bitmap {
    /// `len` cleared bits.
    pub fn new(len: u64) -> Self {
        Bitmap {
            len,
            bytes: vec![0; Self::byte_len(len)],
        }
    }

    /// Bytes needed for `len` bits.
    pub fn byte_len(len: u64) -> usize {
        len.div_ceil(8) as usize
    }

    /// A bitmap over `len` bits from its serialized bytes; `None` if the length is wrong
    /// or bits beyond `len` are set.
    pub fn from_bytes(len: u64, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::byte_len(len) {
            return None;
        }
        let map = Bitmap {
            len,
            bytes: bytes.to_vec(),
        };
        let tail_ok = (len..(bytes.len() as u64 * 8)).all(|i| !map.raw_get(i));
        tail_ok.then_some(map)
    }

    /// The serialized bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bits.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the bitmap has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn raw_get(&self, i: u64) -> bool {
        self.bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Bit `i`; false beyond the end.
    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.raw_get(i)
    }

    /// Sets bit `i` to `value`; returns whether it changed. Ignored beyond the end.
    pub fn set(&mut self, i: u64, value: bool) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 1 << (i % 8);
        let old = *byte & mask != 0;
        if value {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
        old != value
    }

    /// Grows to `len` bits; new bits are clear.
    pub fn grow(&mut self, len: u64) {
        if len > self.len {
            self.len = len;
            self.bytes.resize(Self::byte_len(len), 0);
        }
    }

    /// Clears every bit.
    pub fn clear_all(&mut self) {
        self.bytes.fill(0);
    }

    /// `self |= other` over the common length.
    pub fn union_with(&mut self, other: &Bitmap) {
        for (a, b) in self.bytes.iter_mut().zip(&other.bytes) {
            *a |= *b;
        }
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u64 {
        self.bytes.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Indexes of set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u64> + '_ {
        self.bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(|(byte_index, b)| {
                (0..8)
                    .filter(move |bit| b & (1 << bit) != 0)
                    .map(move |bit| byte_index as u64 * 8 + bit)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_iterate_grow() {
        let mut b = Bitmap::new(20);
        assert!(b.set(3, true));
        assert!(!b.set(3, true));
        b.set(19, true);
        b.set(25, true); // beyond the end: ignored
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), [3, 19]);
        assert_eq!(b.count_ones(), 2);
        b.grow(30);
        assert!(!b.get(25));
        assert_eq!(b.len(), 30);
        let round = Bitmap::from_bytes(30, b.as_bytes()).unwrap();
        assert_eq!(round, b);
        assert!(Bitmap::from_bytes(31, &[0; 3]).is_none());
        assert!(Bitmap::from_bytes(4, &[0x10]).is_none(), "bit beyond len");
    }
}
