//! Which partitions an instance owns: `CONSUMER_ASSIGNMENT=group` (the default) lets the
//! consumer group's coordinator spread them over the running instances (see `group/`);
//! `CONSUMER_ASSIGNMENT=static` fixes them: listed, derived from an ordinal (a
//! StatefulSet pod's name), or all of them. Either way, two instances that claim the same
//! partition for a moment cannot corrupt or double data: the ledger is written with
//! `If-None-Match: *`, the loser of each race is fenced off (see `ledger/writer.rs`).

use std::time::Duration;

use service_runtime::config::{ConfigError, Env};

/// `CONSUMER_ASSIGNMENT`: who decides which partitions this instance reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// `group`: the instances of a service form the consumer group `CONSUMER_GROUP_ID`,
    /// whose coordinator spreads the partitions over them as they come and go.
    Group(GroupSettings),
    /// `static`: fixed by this instance's settings.
    Static(Ownership),
}

/// How an instance takes part in its consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// `CONSUMER_SESSION_TIMEOUT`: an instance without a heartbeat for this long is dead
    /// to the group, and its partitions go to the others.
    pub session_timeout: Duration,
    /// `CONSUMER_HEARTBEAT_INTERVAL`: how often an instance tells the coordinator it
    /// lives, and learns of a rebalance.
    pub heartbeat_interval: Duration,
    /// `CONSUMER_REBALANCE_TIMEOUT`: how long the coordinator waits for every instance to
    /// commit its open batches and rejoin when the group changes.
    pub rebalance_timeout: Duration,
    /// `CONSUMER_GROUP_INSTANCE_ID`: a static member's stable name (a StatefulSet pod's
    /// name): restarted within the session timeout, it gets its partitions back without a
    /// rebalance. Unset: a dynamic member, which leaves the group when it stops.
    pub instance_id: Option<String>,
}

impl Assignment {
    /// Reads `CONSUMER_ASSIGNMENT` and the settings of the mode it names.
    pub fn from_env(env: &Env) -> Result<Assignment, ConfigError> {
        let mode = env.string("CONSUMER_ASSIGNMENT", "group");
        match mode.trim() {
            "static" => Ok(Assignment::Static(Ownership::from_env(env)?)),
            "group" => {
                for variable in ["CONSUMER_PARTITIONS", "CONSUMER_INSTANCES", "CONSUMER_INSTANCE"] {
                    if env.raw(variable).is_some() {
                        return Err(ConfigError::new(
                            variable,
                            "fixes partitions, which the consumer group assigns by default: set \
                             CONSUMER_ASSIGNMENT=static to keep it, or unset it",
                        ));
                    }
                }
                Ok(Assignment::Group(GroupSettings::from_env(env)?))
            }
            other => {
                Err(ConfigError::new("CONSUMER_ASSIGNMENT", format!("{other:?} is not valid: use group or static")))
            }
        }
    }
}

impl GroupSettings {
    fn from_env(env: &Env) -> Result<GroupSettings, ConfigError> {
        let settings = GroupSettings {
            session_timeout: env.duration("CONSUMER_SESSION_TIMEOUT", Duration::from_secs(45))?,
            heartbeat_interval: env.duration("CONSUMER_HEARTBEAT_INTERVAL", Duration::from_secs(3))?,
            rebalance_timeout: env.duration("CONSUMER_REBALANCE_TIMEOUT", Duration::from_secs(60))?,
            instance_id: match env.raw("CONSUMER_GROUP_INSTANCE_ID").map(str::trim) {
                None | Some("") => None,
                Some(id) if id.len() > 255 || id.chars().any(|c| c.is_control()) => {
                    return Err(ConfigError::new(
                        "CONSUMER_GROUP_INSTANCE_ID",
                        format!("{id:?} is not an instance id: use 1 to 255 printable characters"),
                    ));
                }
                Some(id) => Some(id.to_owned()),
            },
        };
        // The broker's own bounds (group.min/max.session.timeout.ms) are checked by the
        // coordinator, which names them in its answer.
        if settings.heartbeat_interval.is_zero() || settings.heartbeat_interval >= settings.session_timeout {
            return Err(ConfigError::new(
                "CONSUMER_HEARTBEAT_INTERVAL",
                format!(
                    "{:?} must be above zero and below CONSUMER_SESSION_TIMEOUT ({:?}); a third of it or less is usual",
                    settings.heartbeat_interval, settings.session_timeout
                ),
            ));
        }
        if settings.rebalance_timeout < Duration::from_secs(1) {
            return Err(ConfigError::new("CONSUMER_REBALANCE_TIMEOUT", "must be at least 1s"));
        }
        Ok(settings)
    }
}

/// How partitions are assigned to this instance in static mode.
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
        let mut pairs = pairs.to_vec();
        pairs.push(("CONSUMER_ASSIGNMENT", "static"));
        match assignment(&pairs)? {
            Assignment::Static(ownership) => Ok(ownership),
            other => Err(format!("not static: {other:?}")),
        }
    }

    fn assignment(pairs: &[(&str, &str)]) -> Result<Assignment, String> {
        Assignment::from_env(&Env::from_pairs(pairs.iter().copied())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_group_assigns_by_default() {
        let expected = GroupSettings {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(60),
            instance_id: None,
        };
        assert_eq!(assignment(&[]), Ok(Assignment::Group(expected.clone())));
        let pod = [("CONSUMER_GROUP_INSTANCE_ID", "sales-consumer-2"), ("CONSUMER_SESSION_TIMEOUT", "10s")];
        let expected = GroupSettings {
            instance_id: Some("sales-consumer-2".to_owned()),
            session_timeout: Duration::from_secs(10),
            ..expected
        };
        assert_eq!(assignment(&pod), Ok(Assignment::Group(expected)));
    }

    #[test]
    fn group_settings_that_cannot_work_are_named() {
        assert_eq!(
            assignment(&[("CONSUMER_PARTITIONS", "0")]).err().as_deref(),
            Some(
                "CONSUMER_PARTITIONS: fixes partitions, which the consumer group assigns by default: set \
                 CONSUMER_ASSIGNMENT=static to keep it, or unset it"
            )
        );
        assert_eq!(
            assignment(&[("CONSUMER_ASSIGNMENT", "round-robin")]).err().as_deref(),
            Some("CONSUMER_ASSIGNMENT: \"round-robin\" is not valid: use group or static")
        );
        let error = assignment(&[("CONSUMER_SESSION_TIMEOUT", "6s"), ("CONSUMER_HEARTBEAT_INTERVAL", "6s")]);
        assert!(error.as_ref().is_err_and(|e| e.starts_with("CONSUMER_HEARTBEAT_INTERVAL: 6s must be")), "{error:?}");
        let error = assignment(&[("CONSUMER_GROUP_INSTANCE_ID", "a\tb")]);
        assert!(error.as_ref().is_err_and(|e| e.contains("is not an instance id")), "{error:?}");
    }

    #[test]
    fn static_with_nothing_set_means_every_partition() {
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
