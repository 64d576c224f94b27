//! ZooKeeper's encoding of node kinds in `ephemeralOwner` (`EphemeralType`).

/// Owner value marking a container node.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte marking an "extended" owner (TTL nodes).
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000_u64 as i64;
const RESERVED_BITS_MASK: i64 = 0x00ff_ff00_0000_0000;
/// Largest TTL in milliseconds (40 bits).
pub const MAX_TTL: i64 = 0x0000_00ff_ffff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralKind {
    /// Persistent node (owner 0).
    Void,
    /// Owned by a session.
    Normal,
    Container,
    Ttl(i64),
}

/// Classifies an owner value. TTL owners are only recognised with extended
/// types enabled (`zookeeper.extendedTypesEnabled`), as in ZooKeeper.
pub fn kind_of(owner: i64, extended_types: bool) -> EphemeralKind {
    if owner == CONTAINER_OWNER {
        return EphemeralKind::Container;
    }
    if extended_types && owner & EXTENDED_MASK == EXTENDED_MASK && owner & RESERVED_BITS_MASK == 0 {
        return EphemeralKind::Ttl(owner & MAX_TTL);
    }
    if owner == 0 {
        EphemeralKind::Void
    } else {
        EphemeralKind::Normal
    }
}

/// The owner value of a TTL node; `None` when the TTL is out of range.
pub fn ttl_owner(ttl: i64) -> Option<i64> {
    (ttl > 0 && ttl <= MAX_TTL).then_some(EXTENDED_MASK | ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_owner_round_trips() {
        let owner = ttl_owner(1234).unwrap();
        assert_eq!(kind_of(owner, true), EphemeralKind::Ttl(1234));
        assert_eq!(kind_of(owner, false), EphemeralKind::Normal);
        assert_eq!(ttl_owner(0), None);
        assert_eq!(ttl_owner(MAX_TTL + 1), None);
        assert_eq!(kind_of(CONTAINER_OWNER, false), EphemeralKind::Container);
        assert_eq!(kind_of(0, true), EphemeralKind::Void);
        assert_eq!(kind_of(0x0100_0000_0000_0001, true), EphemeralKind::Normal);
    }
}
