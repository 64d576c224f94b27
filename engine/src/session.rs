//! Session ids, passwords and timeout negotiation, as ZooKeeper computes them.
//!
//! Passwords are derived from the session id the way ZooKeeper derives them
//! (`java.util.Random(id ^ 0xB3415C00).nextBytes(16)`), so a session imported
//! from an Apache ZooKeeper data dir keeps a password its client already holds.

/// ZooKeeper's `superSecret`.
const SUPER_SECRET: i64 = 0xB341_5C00;
pub const PASSWORD_LEN: usize = 16;

/// java.util.Random's 48-bit linear congruential generator.
struct JavaRandom {
    seed: i64,
}

impl JavaRandom {
    const MULTIPLIER: i64 = 0x5_DEEC_E66D;
    const MASK: i64 = (1 << 48) - 1;

    fn new(seed: i64) -> Self {
        JavaRandom {
            seed: (seed ^ Self::MULTIPLIER) & Self::MASK,
        }
    }

    fn next_int(&mut self) -> i32 {
        self.seed = (self.seed.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.seed >> 16) as i32
    }

    fn next_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(4) {
            let mut rnd = self.next_int();
            for b in chunk {
                *b = rnd as u8;
                rnd >>= 8;
            }
        }
    }
}

/// The password of a session.
pub fn password(session_id: i64) -> [u8; PASSWORD_LEN] {
    let mut out = [0u8; PASSWORD_LEN];
    JavaRandom::new(session_id ^ SUPER_SECRET).next_bytes(&mut out);
    out
}

/// The first session id of a server: its id in the top byte, the start time
/// below, as ZooKeeper's `SessionTrackerImpl.initializeNextSessionId`.
pub fn first_session_id(server_id: u8, now_ms: i64) -> i64 {
    let mut id = ((now_ms << 24) as u64 >> 8) as i64 | (i64::from(server_id) << 56);
    if id == crate::ephemeral::CONTAINER_OWNER {
        id += 1;
    }
    id
}

/// Clamps a requested timeout into `[min, max]`.
pub fn negotiate_timeout(requested: i32, min: i32, max: i32) -> i32 {
    requested.clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_random_matches_the_jdk() {
        // new java.util.Random(42).nextInt() == -1170105035
        assert_eq!(JavaRandom::new(42).next_int(), -1_170_105_035);
        let mut bytes = [0u8; 4];
        JavaRandom::new(42).next_bytes(&mut bytes);
        assert_eq!(i32::from_le_bytes(bytes), -1_170_105_035);
    }

    #[test]
    fn ids_carry_the_server_id() {
        let id = first_session_id(1, 1_700_000_000_000);
        assert_eq!(id >> 56, 1);
        assert_ne!(password(id), password(id + 1));
    }
}
