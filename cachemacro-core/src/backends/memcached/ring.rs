//! Consistent hashing in the spirit of libmemcached's ketama: each server owns many points on
//! a 64-bit circle, and a key goes to the owner of the first point at or after its hash.
//! Adding or removing one of N servers moves about 1/N of the keys; a server taken out of
//! rotation hands its keys to the owners of the next points, spread over all the others.

use xxhash_rust::xxh3::xxh3_64;

const POINTS_PER_SERVER: usize = 160;

pub(crate) struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    /// A ring over servers named by `names` (their `host:port`), indexed as given.
    pub(crate) fn new<S: AsRef<str>>(names: &[S]) -> Ring {
        let mut points: Vec<(u64, usize)> = names
            .iter()
            .enumerate()
            .flat_map(|(i, name)| {
                (0..POINTS_PER_SERVER)
                    .map(move |p| (xxh3_64(format!("{}-{p}", name.as_ref()).as_bytes()), i))
            })
            .collect();
        points.sort_unstable();
        Ring { points }
    }

    /// The server for `key` among those for which `usable` holds; `None` if there is none.
    pub(crate) fn server(&self, key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = xxh3_64(key);
        let start = self.points.partition_point(|&(p, _)| p < h);
        let n = self.points.len();
        (0..n)
            .map(|i| self.points[(start + i) % n].1)
            .find(|&s| usable(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(
        ring: &Ring,
        keys: usize,
        usable: impl Fn(usize) -> bool + Copy,
    ) -> Vec<Option<usize>> {
        (0..keys)
            .map(|k| ring.server(format!("key{k}").as_bytes(), usable))
            .collect()
    }

    #[test]
    fn adding_one_of_n_servers_moves_about_one_nth_of_the_keys() {
        let four = Ring::new(&["a:1", "b:1", "c:1", "d:1"]);
        let five = Ring::new(&["a:1", "b:1", "c:1", "d:1", "e:1"]);
        let (before, after) = (
            spread(&four, 20_000, |_| true),
            spread(&five, 20_000, |_| true),
        );
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // Ideal: 1/5 of the keys, all of them to the new server.
        assert!((3_000..5_000).contains(&moved), "{moved} of 20000 moved");
        assert!(before
            .iter()
            .zip(&after)
            .all(|(a, b)| a == b || *b == Some(4)));
        // Every server gets a fair share.
        for s in 0..5 {
            let n = after.iter().filter(|&&x| x == Some(s)).count();
            assert!((2_500..5_500).contains(&n), "server {s} has {n}");
        }
    }

    #[test]
    fn a_server_out_of_rotation_hands_its_keys_to_all_the_others() {
        let ring = Ring::new(&["a:1", "b:1", "c:1", "d:1"]);
        let all = spread(&ring, 20_000, |_| true);
        let without_b = spread(&ring, 20_000, |s| s != 1);
        let mut gained = [0usize; 4];
        for (a, b) in all.iter().zip(&without_b) {
            if a != b {
                assert_eq!(*a, Some(1), "only b's keys move");
                gained[b.unwrap()] += 1;
            }
        }
        assert_eq!(gained[1], 0);
        assert!(
            gained.iter().enumerate().all(|(s, &g)| s == 1 || g > 500),
            "{gained:?}"
        );
        assert_eq!(ring.server(b"k", |_| false), None);
    }
}
