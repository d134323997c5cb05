//! Which shard a lead belongs to: `hash(lead id) mod shards`, with a hash fixed forever
//! (64-bit FNV-1a over the id's UTF-8 bytes), since every node and every restart must agree.

/// A shard's number, `0..shards`.
pub type ShardId = u32;

/// The shard of lead `id` in a cluster of `shards` shards.
pub fn shard_of(id: &str, shards: u32) -> ShardId {
    assert!(shards > 0, "a cluster has at least one shard");
    let hash = id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    (hash % u64::from(shards)) as ShardId
}

/// The JetStream stream that holds shard `shard`'s log, and the subject it is written on.
pub fn stream_name(shard: ShardId) -> String {
    format!("LEADSCORE_SHARD_{shard}")
}

pub fn subject(shard: ShardId) -> String {
    format!("leadscore.shard.{shard}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fixed_and_spreads_leads_evenly() {
        // FNV-1a's published test vectors: the shard of a lead must never change.
        assert_eq!(shard_of("", u32::MAX), (0xcbf2_9ce4_8422_2325_u64 % u64::from(u32::MAX)) as u32);
        assert_eq!(shard_of("a", u32::MAX), (0xaf63_dc4c_8601_ec8c_u64 % u64::from(u32::MAX)) as u32);
        let mut counts = [0u32; 64];
        for i in 0..64_000 {
            counts[shard_of(&format!("lead-{i}"), 64) as usize] += 1;
        }
        let (low, high) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*low > 850 && *high < 1150, "shards hold {low} to {high} of 64,000 leads");
    }
}
