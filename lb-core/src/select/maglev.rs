//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, section 3.4), with weights.
//!
//! Each backend's preference list is a permutation of the `M` slots (`M` prime), given by an
//! `offset` and a `skip` derived from two stable hashes of the backend's *name*. Backends take
//! turns claiming their next preferred free slot until the table is full. Turns go in name
//! order, so the same set of backends gives the same table whatever order they were added in,
//! in every process. Weights: in each round a backend earns `weight` credits and claims one
//! slot per `max_weight` credits, so slot counts are proportional to weight (0 = no slots);
//! with equal weights this is exactly the paper's algorithm.

use crate::select::hash::{HashKey, siphash13};

/// Table size used when the configuration gives none (a prime, as the paper recommends).
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// Largest table size accepted (bounds the memory a configuration can ask for).
pub const MAX_TABLE_SIZE: u32 = 1 << 24;

/// Marks a slot no backend owns (only when no backend has a weight above 0).
const EMPTY: u32 = u32::MAX;

/// Fixed keys for the two hashes of a backend name: part of the table's definition.
const OFFSET_KEY: HashKey = HashKey(*b"maglev offset v1");
const SKIP_KEY: HashKey = HashKey(*b"maglev skip   v1");

/// One backend as Maglev sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevBackend<'a> {
    /// Unique, stable name: it alone decides the backend's preference list.
    pub name: &'a str,
    /// Relative share of slots; 0 = none.
    pub weight: u32,
}

/// Why a Maglev table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    /// The table size must be prime so every skip walks all slots.
    #[error("Maglev table size {size} is not prime")]
    NotPrime {
        /// The size asked for.
        size: u32,
    },
    /// Every backend needs a chance at a slot.
    #[error("Maglev table size {size} is smaller than the number of backends ({backends})")]
    TooSmall {
        /// The size asked for.
        size: u32,
        /// How many backends were given.
        backends: usize,
    },
    /// The size is above [`MAX_TABLE_SIZE`].
    #[error("Maglev table size {size} is above the maximum {MAX_TABLE_SIZE}")]
    TooLarge {
        /// The size asked for.
        size: u32,
    },
    /// Names identify backends; two with one name would share a preference list.
    #[error("duplicate backend name {name:?}")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
}

/// A built Maglev lookup table: slot → index into the backend slice given to [`Maglev::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    slots: Vec<u32>,
    backends: usize,
}

/// True if `n` is prime (trial division; at most 65 536 steps for a `u32`).
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n % 2 == 0 || n % 3 == 0 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 5u64;
    while d * d <= n {
        if n % d == 0 || n % (d + 2) == 0 {
            return false;
        }
        d += 6;
    }
    true
}

/// The `(offset, skip)` of a backend name for table size `size`.
pub fn permutation(name: &str, size: u32) -> (u32, u32) {
    let m = u64::from(size);
    let offset = siphash13(&OFFSET_KEY, name.as_bytes()) % m;
    let skip = siphash13(&SKIP_KEY, name.as_bytes()) % (m - 1) + 1;
    (offset as u32, skip as u32)
}

impl Maglev {
    /// Checks that `size` is a usable table size.
    pub fn validate_size(size: u32) -> Result<(), MaglevError> {
        if size > MAX_TABLE_SIZE {
            return Err(MaglevError::TooLarge { size });
        }
        if !is_prime(size) {
            return Err(MaglevError::NotPrime { size });
        }
        Ok(())
    }

    /// Builds the table for `backends`; lookups return indices into this slice.
    pub fn build(size: u32, backends: &[MaglevBackend<'_>]) -> Result<Self, MaglevError> {
        Self::validate_size(size)?;
        if (size as usize) < backends.len() {
            return Err(MaglevError::TooSmall {
                size,
                backends: backends.len(),
            });
        }
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_unstable_by(|&a, &b| backends[a].name.cmp(backends[b].name));
        if let Some(w) = order
            .windows(2)
            .find(|w| backends[w[0]].name == backends[w[1]].name)
        {
            return Err(MaglevError::DuplicateName {
                name: backends[w[0]].name.to_owned(),
            });
        }
        let mut slots = vec![EMPTY; size as usize];
        let max_weight = backends
            .iter()
            .map(|b| u64::from(b.weight))
            .max()
            .unwrap_or(0);
        if max_weight > 0 {
            fill(&mut slots, size, backends, &order, max_weight);
        }
        Ok(Self {
            slots,
            backends: backends.len(),
        })
    }

    /// A table with no backends: every lookup returns `None`.
    pub fn empty(size: u32) -> Result<Self, MaglevError> {
        Self::build(size, &[])
    }

    /// The backend index for a flow hash, or `None` if no backend has a slot.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u32> {
        match self.slots.get(self.slot_of(hash)) {
            Some(&EMPTY) | None => None,
            Some(&b) => Some(b),
        }
    }

    /// Starts loading the slot a later [`Maglev::lookup`] of `hash` reads into the cache.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if let Some(slot) = self.slots.get(self.slot_of(hash)) {
            crate::prefetch::prefetch(slot);
        }
    }

    #[inline(always)]
    fn slot_of(&self, hash: u64) -> usize {
        // Lemire's multiply-high reduction: uniform like `% M` for a uniform hash, but cheaper.
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    /// The table size `M`.
    pub fn size(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The owner of every slot (`None` for an empty table).
    pub fn slots(&self) -> impl Iterator<Item = Option<u32>> + '_ {
        self.slots.iter().map(|&s| (s != EMPTY).then_some(s))
    }

    /// How many slots each backend (by index) owns.
    pub fn slot_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.backends];
        for &s in &self.slots {
            if let Some(c) = counts.get_mut(s as usize) {
                *c += 1;
            }
        }
        counts
    }
}

fn fill(
    slots: &mut [u32],
    size: u32,
    backends: &[MaglevBackend<'_>],
    order: &[usize],
    max_weight: u64,
) {
    let perms: Vec<(u32, u32)> = backends.iter().map(|b| permutation(b.name, size)).collect();
    let mut next: Vec<u32> = perms.iter().map(|p| p.0).collect();
    let mut credit = vec![0u64; backends.len()];
    let mut filled = 0usize;
    loop {
        for &i in order {
            let weight = u64::from(backends[i].weight);
            if weight == 0 {
                continue;
            }
            credit[i] += weight;
            let skip = perms[i].1;
            while credit[i] >= max_weight {
                credit[i] -= max_weight;
                // The next free slot in i's preference list; one exists because filled < M
                // and the list is a permutation of all slots (skip < M, M prime).
                let mut c = next[i];
                while slots[c as usize] != EMPTY {
                    c = advance(c, skip, size);
                }
                slots[c as usize] = i as u32;
                next[i] = advance(c, skip, size);
                filled += 1;
                if filled == slots.len() {
                    return;
                }
            }
        }
    }
}

#[inline(always)]
fn advance(c: u32, skip: u32, size: u32) -> u32 {
    // c, skip < size ≤ 2^24, so the sum cannot overflow.
    let n = c + skip;
    if n >= size { n - size } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[String], weight: u32) -> Vec<MaglevBackend<'_>> {
        names
            .iter()
            .map(|n| MaglevBackend { name: n, weight })
            .collect()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("backend-{i}")).collect()
    }

    /// The table as owner names, to compare tables built from differently ordered inputs.
    fn by_name(table: &Maglev, backends: &[MaglevBackend<'_>]) -> Vec<Option<String>> {
        table
            .slots()
            .map(|s| s.map(|i| backends[i as usize].name.to_owned()))
            .collect()
    }

    #[test]
    fn primes() {
        let small: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(is_prime(4_294_967_291));
        assert!(!is_prime(65_535));
        assert!(!is_prime(4_294_967_295));
        assert!(!is_prime(65_521 * 65_519));
    }

    #[test]
    fn errors_name_the_problem() {
        let n = names(3);
        let b = named(&n, 1);
        assert_eq!(
            Maglev::build(65_535, &b),
            Err(MaglevError::NotPrime { size: 65_535 })
        );
        assert_eq!(
            Maglev::build(2, &b),
            Err(MaglevError::TooSmall {
                size: 2,
                backends: 3
            })
        );
        let dup = [
            MaglevBackend {
                name: "a",
                weight: 1,
            },
            MaglevBackend {
                name: "a",
                weight: 2,
            },
        ];
        assert_eq!(
            Maglev::build(7, &dup).unwrap_err().to_string(),
            "duplicate backend name \"a\""
        );
        assert!(matches!(
            Maglev::build(16_777_259, &b),
            Err(MaglevError::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_set_looks_up_none() {
        let t = Maglev::empty(13).unwrap();
        assert_eq!(t.lookup(12345), None);
        let zero = [MaglevBackend {
            name: "a",
            weight: 0,
        }];
        let t = Maglev::build(13, &zero).unwrap();
        assert!((0..100u64).all(|h| t.lookup(h.wrapping_mul(0x9e37_79b9_7f4a_7c15)).is_none()));
        assert_eq!(t.slot_counts(), [0]);
    }

    #[test]
    fn every_slot_filled_and_insertion_order_irrelevant() {
        let n = names(7);
        let b = named(&n, 1);
        let t = Maglev::build(101, &b).unwrap();
        assert!(t.slots().all(|s| s.is_some()));
        let mut reversed = b.clone();
        reversed.reverse();
        let t2 = Maglev::build(101, &reversed).unwrap();
        assert_eq!(by_name(&t, &b), by_name(&t2, &reversed));
    }

    #[test]
    fn weights_are_proportional() {
        let b = [
            MaglevBackend {
                name: "heavy",
                weight: 2,
            },
            MaglevBackend {
                name: "light",
                weight: 1,
            },
            MaglevBackend {
                name: "off",
                weight: 0,
            },
            MaglevBackend {
                name: "other",
                weight: 1,
            },
        ];
        let counts = Maglev::build(65_537, &b).unwrap().slot_counts();
        assert_eq!(counts[2], 0);
        assert_eq!(counts.iter().sum::<usize>(), 65_537);
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!(
            (1.98..2.02).contains(&ratio),
            "heavy/light = {ratio}, counts {counts:?}"
        );
    }

    #[test]
    fn evenness_100_backends() {
        let n = names(100);
        let counts = Maglev::build(DEFAULT_TABLE_SIZE, &named(&n, 1))
            .unwrap()
            .slot_counts();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        let ratio = *max as f64 / *min as f64;
        println!("100 backends, M=65537: min {min} max {max} slots, max/min {ratio:.4}");
        // Equal weights take one slot per round, so counts differ by at most one.
        assert!(max - min <= 1, "min {min} max {max}");
        assert!(ratio <= 1.01);
    }

    #[test]
    fn small_known_table() {
        // Pinned: a change in the name hashes or the fill order changes every balancer's table.
        let b = [
            MaglevBackend {
                name: "h2",
                weight: 1,
            },
            MaglevBackend {
                name: "h3",
                weight: 1,
            },
        ];
        let t = Maglev::build(7, &b).unwrap();
        let owners: String = t
            .slots()
            .map(|s| if s == Some(0) { '2' } else { '3' })
            .collect();
        assert_eq!(owners, PINNED_H2_H3_M7);
        assert_eq!(permutation("h2", 7), PINNED_H2_PERM);
    }

    const PINNED_H2_H3_M7: &str = "2222333";
    const PINNED_H2_PERM: (u32, u32) = (2, 6);
}
