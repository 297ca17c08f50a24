//! Whether every partition of this member's topic has an owner in the group's current
//! generation, as the coordinator describes the group (`DescribeGroups`, what
//! `kafka-consumer-groups.sh --describe --members` reads). A leader that assigns only
//! its own topic (a store-events consumer older than mixed-topic groups) leaves the
//! members that read another topic with nothing while that topic goes unread: such a
//! member must not say it is ready, and the unowned partitions are counted in
//! `consumer_group_unowned_partitions` for an alert. Pure: the member feeds it what the
//! coordinator said.

use std::collections::BTreeSet;

/// One member of the group as the coordinator described it, read through the consumer
/// protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its member id.
    pub member_id: String,
    /// The client id it sent.
    pub client_id: String,
    /// The host it connected from.
    pub client_host: String,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions of the topic in question it was assigned.
    pub owns: Vec<i32>,
}

/// Who reads a topic in one generation of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// The topic's partitions that no member was assigned.
    pub unowned: Vec<i32>,
    /// How many members subscribe to the topic.
    pub subscribers: usize,
}

impl Coverage {
    /// The coverage of `topic`, whose partitions are `partitions`, by `members`.
    pub fn of(topic: &str, partitions: &[i32], members: &[Seen]) -> Coverage {
        let owned: BTreeSet<i32> = members.iter().flat_map(|m| m.owns.iter().copied()).collect();
        Coverage {
            unowned: partitions.iter().copied().filter(|p| !owned.contains(p)).collect(),
            subscribers: members.iter().filter(|m| m.topics.iter().any(|t| t == topic)).count(),
        }
    }

    /// This member's readiness as far as the group goes: `Ok` when every partition of its
    /// topic has an owner (reading some, or idle because the others read them all), `Err`
    /// naming the unowned partitions, the leader that left them out and what to do.
    pub fn verdict(
        &self,
        group: &str,
        topic: &str,
        generation: i32,
        mine: &[i32],
        leader: Option<&Seen>,
    ) -> Result<String, String> {
        if !self.unowned.is_empty() {
            let partitions = self.unowned.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
            let by = leader.map_or_else(
                || "its leader".to_owned(),
                |l| format!("its leader, member {} (client {}, host {}),", l.member_id, l.client_id, l.client_host),
            );
            return Err(format!(
                "partitions {partitions} of topic {topic} have no owner in the consumer group {group} (generation \
                 {generation}): {by} assigned none of them. A store-events consumer older than mixed-topic groups \
                 assigns only its own topic: run one version in the group, or give each topic's consumers a \
                 CONSUMER_GROUP_ID of their own"
            ));
        }
        if mine.is_empty() {
            let others = self.subscribers.saturating_sub(1);
            return Ok(format!(
                "idle: the group {group}'s {others} other member(s) that read topic {topic} own all its partitions \
                 (generation {generation})"
            ));
        }
        Ok(format!("generation {generation}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(member: &str, topics: &[&str], owns: &[i32]) -> Seen {
        Seen {
            member_id: member.to_owned(),
            client_id: "sales-consumer".to_owned(),
            client_host: "/127.0.0.1".to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owns: owns.to_vec(),
        }
    }

    #[test]
    fn a_member_with_partitions_in_a_fully_owned_topic_is_ready() {
        let members = [seen("a", &["t"], &[0]), seen("b", &["t"], &[1])];
        let coverage = Coverage::of("t", &[0, 1], &members);
        assert_eq!(coverage, Coverage { unowned: vec![], subscribers: 2 });
        assert_eq!(coverage.verdict("g", "t", 4, &[0], None), Ok("generation 4".to_owned()));
    }

    #[test]
    fn an_idle_member_is_ready_only_when_the_others_own_every_partition() {
        let members = [seen("a", &["t"], &[0, 1]), seen("b", &["t"], &[])];
        let coverage = Coverage::of("t", &[0, 1], &members);
        let verdict = coverage.verdict("g", "t", 2, &[], None);
        assert_eq!(
            verdict,
            Ok("idle: the group g's 1 other member(s) that read topic t own all its partitions (generation 2)"
                .to_owned())
        );
    }

    /// The case an older leader makes: it reads `old` and assigns only `old`, so the
    /// member reading `new` gets nothing and `new` goes unread.
    #[test]
    fn partitions_nobody_owns_make_the_member_unready_and_name_the_leader() {
        let leader = seen("old-1", &["old"], &[]);
        let members = [leader.clone(), seen("new-1", &["new"], &[])];
        let coverage = Coverage::of("new", &[0, 1, 2], &members);
        assert_eq!(coverage.unowned, [0, 1, 2]);
        let verdict = coverage.verdict("g", "new", 7, &[], Some(&leader));
        let why = verdict.expect_err("unowned partitions are not ready");
        assert!(
            why.starts_with(
                "partitions 0, 1, 2 of topic new have no owner in the consumer group g (generation 7): its leader, \
                 member old-1 (client sales-consumer, host /127.0.0.1), assigned none of them."
            ),
            "{why}"
        );
        assert!(why.contains("CONSUMER_GROUP_ID"), "{why}");
    }

    #[test]
    fn a_partition_added_since_the_assignment_is_unowned_even_for_a_member_that_reads() {
        let members = [seen("a", &["t"], &[0, 1])];
        let coverage = Coverage::of("t", &[0, 1, 2], &members);
        assert_eq!(coverage.unowned, [2]);
        assert!(coverage.verdict("g", "t", 1, &[0, 1], None).is_err());
    }
}
