//! Which partitions an instance owns. rskafka has no consumer groups, so ownership is
//! static: listed, derived from an ordinal (a StatefulSet pod's name), or all of them.
//! Two instances that claim the same partition cannot corrupt or double data: the ledger
//! is written with `If-None-Match: *`, the loser of each race is fenced off (see
//! `ledger/writer.rs`).

use service_runtime::config::{ConfigError, Env};

/// How partitions are assigned to this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Every partition of the topic, including ones added later.
    All,
    /// `CONSUMER_PARTITIONS=0,1`: exactly these.
    Listed(Vec<i32>),
    /// `CONSUMER_INSTANCE` of `CONSUMER_INSTANCES`: partitions `p` with
    /// `p % instances == instance`, including ones added later.
    Ordinal {
        /// This instance's ordinal, from 0.
        instance: u32,
        /// How many instances share the topic.
        instances: u32,
    },
}

impl Ownership {
    /// Reads `CONSUMER_PARTITIONS`, or `CONSUMER_INSTANCE` and `CONSUMER_INSTANCES`.
    /// Without `CONSUMER_INSTANCE`, the ordinal is the number at the end of `HOSTNAME`
    /// (`sales-consumer-2` is 2), as a StatefulSet names its pods.
    pub fn from_env(env: &Env) -> Result<Ownership, ConfigError> {
        if let Some(raw) = env.raw("CONSUMER_PARTITIONS") {
            let mut partitions = Vec::new();
            for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let partition: i32 = part.parse().map_err(|_| {
                    ConfigError::new("CONSUMER_PARTITIONS", format!("{part:?} is not a partition number: use e.g. 0,1"))
                })?;
                if partition < 0 {
                    return Err(ConfigError::new("CONSUMER_PARTITIONS", format!("{partition} is negative")));
                }
                partitions.push(partition);
            }
            if partitions.is_empty() {
                return Err(ConfigError::new("CONSUMER_PARTITIONS", "lists no partition: use e.g. 0,1, or unset it"));
            }
            partitions.sort_unstable();
            partitions.dedup();
            return Ok(Ownership::Listed(partitions));
        }
        let Some(instances) = env.raw("CONSUMER_INSTANCES") else {
            if env.raw("CONSUMER_INSTANCE").is_some() {
                return Err(ConfigError::new("CONSUMER_INSTANCE", "needs CONSUMER_INSTANCES, the number of instances"));
            }
            return Ok(Ownership::All);
        };
        let instances: u32 = instances.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            ConfigError::new("CONSUMER_INSTANCES", format!("{instances:?} is not a count of at least 1"))
        })?;
        let instance = match env.raw("CONSUMER_INSTANCE") {
            Some(raw) => raw.trim().parse::<u32>().map_err(|_| {
                ConfigError::new("CONSUMER_INSTANCE", format!("{raw:?} is not an ordinal: use 0, 1, ..."))
            })?,
            None => ordinal_of(env.raw("HOSTNAME").unwrap_or_default()).ok_or_else(|| {
                ConfigError::new(
                    "CONSUMER_INSTANCE",
                    "unset, and HOSTNAME does not end in -<ordinal> as a StatefulSet pod's does: set it",
                )
            })?,
        };
        if instance >= instances {
            return Err(ConfigError::new(
                "CONSUMER_INSTANCE",
                format!("{instance} is not below CONSUMER_INSTANCES={instances}"),
            ));
        }
        Ok(Ownership::Ordinal { instance, instances })
    }

    /// Whether this instance owns `partition`.
    pub fn owns(&self, partition: i32) -> bool {
        match self {
            Ownership::All => true,
            Ownership::Listed(partitions) => partitions.contains(&partition),
            Ownership::Ordinal { instance, instances } => {
                u32::try_from(partition).is_ok_and(|p| p % instances == *instance)
            }
        }
    }
}

/// The trailing number of a StatefulSet pod name: `inventory-consumer-3` is 3.
fn ordinal_of(hostname: &str) -> Option<u32> {
    hostname.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ownership(pairs: &[(&str, &str)]) -> Result<Ownership, String> {
        Ownership::from_env(&Env::from_pairs(pairs.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn nothing_set_means_every_partition() {
        assert_eq!(ownership(&[]), Ok(Ownership::All));
    }

    #[test]
    fn listed_partitions_are_exact() {
        let owned = ownership(&[("CONSUMER_PARTITIONS", "2, 0,2")]);
        assert_eq!(owned, Ok(Ownership::Listed(vec![0, 2])));
        let owned = owned.unwrap_or(Ownership::All);
        assert_eq!((0..4).filter(|p| owned.owns(*p)).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn the_ordinal_comes_from_a_statefulset_pod_name() {
        let owned = ownership(&[("CONSUMER_INSTANCES", "2"), ("HOSTNAME", "sales-consumer-1")]);
        assert_eq!(owned, Ok(Ownership::Ordinal { instance: 1, instances: 2 }));
        let owned = owned.unwrap_or(Ownership::All);
        assert_eq!((0..6).filter(|p| owned.owns(*p)).collect::<Vec<_>>(), [1, 3, 5]);
    }

    #[test]
    fn ordinals_cover_every_partition_exactly_once() {
        let owners: Vec<Ownership> = (0..3).map(|i| Ownership::Ordinal { instance: i, instances: 3 }).collect();
        for partition in 0..20 {
            assert_eq!(owners.iter().filter(|o| o.owns(partition)).count(), 1);
        }
    }

    #[test]
    fn bad_settings_name_the_variable() {
        assert_eq!(
            ownership(&[("CONSUMER_PARTITIONS", "0,x")]).err().as_deref(),
            Some("CONSUMER_PARTITIONS: \"x\" is not a partition number: use e.g. 0,1")
        );
        assert_eq!(
            ownership(&[("CONSUMER_INSTANCES", "2"), ("CONSUMER_INSTANCE", "2")]).err().as_deref(),
            Some("CONSUMER_INSTANCE: 2 is not below CONSUMER_INSTANCES=2")
        );
        assert_eq!(
            ownership(&[("CONSUMER_INSTANCES", "2"), ("HOSTNAME", "laptop")]).err().as_deref(),
            Some(
                "CONSUMER_INSTANCE: unset, and HOSTNAME does not end in -<ordinal> as a StatefulSet pod's does: set it"
            )
        );
    }
}
