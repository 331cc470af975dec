//! Stable content hashes for resource versions.
//!
//! Versions must be equal across processes, replicas and restarts for equal content, so they cannot
//! come from `std`'s randomly keyed hasher or from prost encodings (which write `map` fields in
//! `HashMap` order). A [`Fingerprint`] is FNV-1a (64 bit) over length-prefixed canonical inputs.

/// Bumped whenever translation output changes for the same input, so clients get the new form.
pub const TRANSLATION_REV: &str = "gw-xds-1";

/// An FNV-1a 64 accumulator over length-prefixed fields.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(u64);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint::new()
    }
}

impl Fingerprint {
    /// An accumulator seeded with [`TRANSLATION_REV`].
    pub fn new() -> Fingerprint {
        Fingerprint(0xcbf2_9ce4_8422_2325).str(TRANSLATION_REV)
    }

    /// Adds raw bytes, length-prefixed so that ("ab","c") and ("a","bc") differ.
    pub fn bytes(mut self, b: &[u8]) -> Fingerprint {
        for x in (b.len() as u64).to_le_bytes().iter().chain(b) {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// Adds a string.
    pub fn str(self, s: &str) -> Fingerprint {
        self.bytes(s.as_bytes())
    }

    /// The hash.
    pub fn value(self) -> u64 {
        self.0
    }

    /// The version string: 16 hex digits.
    pub fn version(self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Fingerprint;

    #[test]
    fn stable_and_length_prefixed() {
        let a = Fingerprint::new().str("ab").str("c").version();
        let b = Fingerprint::new().str("a").str("bc").version();
        assert_ne!(a, b);
        assert_eq!(a, Fingerprint::new().str("ab").str("c").version());
        assert_eq!(a.len(), 16);
    }
}
