//! The assignor the group's leader runs: every partition of every topic that some member
//! subscribes to goes to exactly one of that topic's subscribers, as Kafka's Java
//! assignors do, so that a group whose members read different topics (a topic renamed
//! during a migration, a blue/green deployment, a group id shared by mistake) leaves no
//! subscribed partition unread. Per topic, the subscribers' shares differ by at most one,
//! and as few partitions move as that allows. Each member claims what it owned in the last
//! generation it was part of; a partition two members claim (one of them missed a
//! rebalance) goes to the later generation's claim. Pure: the leader feeds it the
//! members' subscriptions and the topics' partitions, and sends what it returns.

use std::collections::{BTreeMap, BTreeSet};

/// The protocol name, shown by `kafka-consumer-groups.sh --describe --state` as the
/// group's assignment strategy.
pub const NAME: &str = "store-events-sticky";

/// One member's subscription as the assignor reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The member id.
    pub member: String,
    /// The partitions it owned in the generation `generation`.
    pub owned: Vec<i32>,
    /// The last generation it was part of (-1 for none).
    pub generation: i32,
}

/// One member's subscription as the leader reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The member id.
    pub member: String,
    /// The topics it reads.
    pub topics: Vec<String>,
    /// The partitions it owned in the generation `generation`, by topic.
    pub owned: BTreeMap<String, Vec<i32>>,
    /// The last generation it was part of (-1 for none).
    pub generation: i32,
}

/// Every member's share, by topic: each subscribed topic that `partitions` holds (the
/// topics that exist) is spread over its subscribers with [`assign`]. Every member gets
/// an entry, maybe empty; a topic missing from `partitions` is assigned to nobody.
pub fn assign_topics(
    subscriptions: &[Subscription],
    partitions: &BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut result: BTreeMap<String, BTreeMap<String, Vec<i32>>> =
        subscriptions.iter().map(|s| (s.member.clone(), BTreeMap::new())).collect();
    for (topic, topic_partitions) in partitions {
        let claims: Vec<Claim> = subscriptions
            .iter()
            .filter(|s| s.topics.contains(topic))
            .map(|s| Claim {
                member: s.member.clone(),
                owned: s.owned.get(topic).cloned().unwrap_or_default(),
                generation: s.generation,
            })
            .collect();
        for (member, share) in assign(&claims, topic_partitions) {
            if let Some(shares) = result.get_mut(&member).filter(|_| !share.is_empty()) {
                shares.insert(topic.clone(), share);
            }
        }
    }
    result
}

/// Spreads `partitions` over the members of `claims`; every member gets an entry, maybe
/// empty (more members than partitions).
pub fn assign(claims: &[Claim], partitions: &[i32]) -> BTreeMap<String, Vec<i32>> {
    let mut result: BTreeMap<String, Vec<i32>> = claims.iter().map(|c| (c.member.clone(), Vec::new())).collect();
    if result.is_empty() {
        return result;
    }
    let existing: BTreeSet<i32> = partitions.iter().copied().collect();

    // Who keeps what: each partition still there goes to its latest claim (the first
    // member by id on a tie).
    let mut owner: BTreeMap<i32, (i32, &str)> = BTreeMap::new();
    for claim in claims {
        for &partition in claim.owned.iter().filter(|p| existing.contains(p)) {
            let candidate = (claim.generation, claim.member.as_str());
            match owner.get(&partition) {
                Some(&(generation, member))
                    if (generation, std::cmp::Reverse(member)) >= (candidate.0, std::cmp::Reverse(candidate.1)) => {}
                _ => {
                    owner.insert(partition, candidate);
                }
            }
        }
    }
    for (&partition, &(_, member)) in &owner {
        if let Some(kept) = result.get_mut(member) {
            kept.push(partition);
        }
    }

    // Quotas: `base` each, one more for the first `extra` members, which are those that
    // keep the most (so that fewer partitions move), then by id.
    let members = result.len();
    let (base, extra) = (existing.len() / members, existing.len() % members);
    let mut order: Vec<(usize, String)> = result.iter().map(|(m, kept)| (kept.len(), m.clone())).collect();
    order.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let quota: BTreeMap<String, usize> =
        order.into_iter().enumerate().map(|(i, (_, member))| (member, base + usize::from(i < extra))).collect();

    // Members over their quota give up their highest partitions; those and the unowned
    // ones go, lowest first, to the member with the most room left.
    let mut pool: Vec<i32> = existing.iter().copied().filter(|p| !owner.contains_key(p)).collect();
    for (member, kept) in &mut result {
        let quota = quota[member];
        if kept.len() > quota {
            pool.extend(kept.drain(quota..));
        }
    }
    pool.sort_unstable();
    for partition in pool {
        let room = |m: &String, kept: &Vec<i32>| quota[m].saturating_sub(kept.len());
        let Some(member) = result
            .iter()
            .filter(|(m, kept)| room(m, kept) > 0)
            .max_by(|a, b| room(a.0, a.1).cmp(&room(b.0, b.1)).then_with(|| b.0.cmp(a.0)))
            .map(|(m, _)| m.clone())
        else {
            break; // unreachable: the quotas add up to the partitions
        };
        if let Some(kept) = result.get_mut(&member) {
            kept.push(partition);
        }
    }
    for kept in result.values_mut() {
        kept.sort_unstable();
    }
    result
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn claims(owned: &[(&str, &[i32])]) -> Vec<Claim> {
        owned.iter().map(|(m, o)| Claim { member: (*m).to_owned(), owned: o.to_vec(), generation: 1 }).collect()
    }

    fn as_claims(assignment: &BTreeMap<String, Vec<i32>>, generation: i32) -> Vec<Claim> {
        assignment.iter().map(|(m, o)| Claim { member: m.clone(), owned: o.clone(), generation }).collect()
    }

    /// Every partition exactly once, to a member of the group, shares within one.
    fn assert_balanced(assignment: &BTreeMap<String, Vec<i32>>, partitions: &[i32], members: usize) {
        let mut all: Vec<i32> = assignment.values().flatten().copied().collect();
        all.sort_unstable();
        let mut expected = partitions.to_vec();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(all, expected, "{assignment:?}");
        assert_eq!(assignment.len(), members);
        let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
        let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
        assert!(max - min <= 1, "unbalanced: {assignment:?}");
    }

    /// Partitions that changed owner between two assignments.
    fn moved(before: &BTreeMap<String, Vec<i32>>, after: &BTreeMap<String, Vec<i32>>) -> usize {
        let owner = |a: &BTreeMap<String, Vec<i32>>| -> BTreeMap<i32, String> {
            a.iter().flat_map(|(m, ps)| ps.iter().map(move |p| (*p, m.clone()))).collect()
        };
        let (before, after) = (owner(before), owner(after));
        after.iter().filter(|(p, m)| before.get(p).is_some_and(|b| b != *m)).count()
    }

    fn subscription(member: &str, topics: &[&str], owned: &[(&str, &[i32])]) -> Subscription {
        Subscription {
            member: member.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            owned: owned.iter().map(|(t, p)| ((*t).to_owned(), p.to_vec())).collect(),
            generation: 1,
        }
    }

    fn topics(list: &[(&str, i32)]) -> BTreeMap<String, Vec<i32>> {
        list.iter().map(|(t, n)| ((*t).to_owned(), (0..*n).collect())).collect()
    }

    #[test]
    fn members_that_read_different_topics_each_get_their_topics_partitions() {
        let members =
            [subscription("a", &["old"], &[]), subscription("b", &["new"], &[]), subscription("c", &["new"], &[])];
        let result = assign_topics(&members, &topics(&[("old", 2), ("new", 4)]));
        assert_eq!(result["a"], BTreeMap::from([("old".to_owned(), vec![0, 1])]));
        assert_eq!(result["b"], BTreeMap::from([("new".to_owned(), vec![0, 2])]));
        assert_eq!(result["c"], BTreeMap::from([("new".to_owned(), vec![1, 3])]));
    }

    #[test]
    fn a_member_of_two_topics_shares_each_with_that_topics_subscribers() {
        let members = [subscription("a", &["x", "y"], &[("x", &[0, 1, 2])]), subscription("b", &["x"], &[])];
        let result = assign_topics(&members, &topics(&[("x", 4), ("y", 2)]));
        assert_eq!(result["a"], BTreeMap::from([("x".to_owned(), vec![0, 1]), ("y".to_owned(), vec![0, 1])]));
        assert_eq!(result["b"], BTreeMap::from([("x".to_owned(), vec![2, 3])]));
    }

    #[test]
    fn a_topic_that_does_not_exist_goes_to_nobody_and_its_subscriber_is_listed_idle() {
        let members = [subscription("a", &["gone"], &[("gone", &[0])]), subscription("b", &["x"], &[])];
        let result = assign_topics(&members, &topics(&[("x", 2)]));
        assert_eq!(result["a"], BTreeMap::new());
        assert_eq!(result["b"], BTreeMap::from([("x".to_owned(), vec![0, 1])]));
    }

    /// Random groups over three topics: every partition of every topic with a subscriber
    /// goes to exactly one of its subscribers, balanced per topic.
    #[test]
    fn random_mixed_groups_assign_every_subscribed_partition_to_a_subscriber() {
        let mut rng = StdRng::seed_from_u64(12);
        let names = ["t0", "t1", "t2"];
        for _ in 0..500 {
            let partitions: BTreeMap<String, Vec<i32>> =
                names.iter().map(|t| ((*t).to_owned(), (0..rng.random_range(0..12)).collect())).collect();
            let members: Vec<Subscription> = (0..rng.random_range(1..7))
                .map(|m| {
                    let topics: Vec<&str> = names.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
                    let owned: Vec<(&str, Vec<i32>)> = topics
                        .iter()
                        .map(|t| (*t, (0..rng.random_range(0..4)).map(|_| rng.random_range(0..12)).collect()))
                        .collect();
                    let owned: Vec<(&str, &[i32])> = owned.iter().map(|(t, p)| (*t, p.as_slice())).collect();
                    subscription(&format!("m{m}"), &topics, &owned)
                })
                .collect();
            let result = assign_topics(&members, &partitions);
            assert_eq!(result.len(), members.len());
            for (topic, all) in &partitions {
                let subscribers: Vec<&Subscription> = members.iter().filter(|s| s.topics.contains(topic)).collect();
                let shares: BTreeMap<String, Vec<i32>> = subscribers
                    .iter()
                    .map(|s| (s.member.clone(), result[&s.member].get(topic).cloned().unwrap_or_default()))
                    .collect();
                if subscribers.is_empty() {
                    assert!(result.values().all(|r| !r.contains_key(topic)), "{members:?} -> {result:?}");
                } else {
                    assert_balanced(&shares, all, subscribers.len());
                }
            }
        }
    }

    #[test]
    fn a_first_assignment_spreads_evenly() {
        let result = assign(&claims(&[("a", &[]), ("b", &[]), ("c", &[])]), &[0, 1, 2, 3, 4, 5, 6]);
        assert_balanced(&result, &[0, 1, 2, 3, 4, 5, 6], 3);
        let sizes: Vec<usize> = result.values().map(Vec::len).collect();
        assert_eq!(sizes, [3, 2, 2]);
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let result = assign(&claims(&[("a", &[]), ("b", &[]), ("c", &[])]), &[0, 1]);
        assert_balanced(&result, &[0, 1], 3);
        assert_eq!(result.values().filter(|p| p.is_empty()).count(), 1);
        assert!(assign(&[], &[0, 1]).is_empty());
    }

    #[test]
    fn the_same_group_again_moves_nothing() {
        let first = assign(&claims(&[("a", &[]), ("b", &[]), ("c", &[])]), &(0..12).collect::<Vec<_>>());
        let again = assign(&as_claims(&first, 1), &(0..12).collect::<Vec<_>>());
        assert_eq!(first, again);
    }

    #[test]
    fn a_new_member_takes_only_its_share() {
        let partitions: Vec<i32> = (0..12).collect();
        let three = assign(&claims(&[("a", &[]), ("b", &[]), ("c", &[])]), &partitions);
        let mut next = as_claims(&three, 1);
        next.push(Claim { member: "d".to_owned(), owned: Vec::new(), generation: -1 });
        let four = assign(&next, &partitions);
        assert_balanced(&four, &partitions, 4);
        assert_eq!(four["d"].len(), 3);
        assert_eq!(moved(&three, &four), 3, "only the new member's share moves");
        // The three old members each gave exactly one partition to the new one.
        for member in ["a", "b", "c"] {
            assert!(four[member].iter().all(|p| three[member].contains(p)), "{member} took another's partition");
        }
    }

    #[test]
    fn a_member_that_leaves_moves_only_its_partitions() {
        let partitions: Vec<i32> = (0..10).collect();
        let three = assign(&claims(&[("a", &[]), ("b", &[]), ("c", &[])]), &partitions);
        let two =
            assign(&as_claims(&three, 1).into_iter().filter(|c| c.member != "b").collect::<Vec<_>>(), &partitions);
        assert_balanced(&two, &partitions, 2);
        for member in ["a", "c"] {
            assert!(three[member].iter().all(|p| two[member].contains(p)), "{member} lost a partition it had");
        }
    }

    #[test]
    fn a_stale_claim_loses_to_the_later_generation() {
        let mut stale = claims(&[("a", &[0, 1]), ("b", &[1])]);
        stale[0].generation = 3;
        stale[1].generation = 4;
        let result = assign(&stale, &[0, 1]);
        assert_eq!(result["a"], [0]);
        assert_eq!(result["b"], [1]);
    }

    #[test]
    fn partitions_that_are_gone_are_not_assigned_and_new_ones_are() {
        let result = assign(&claims(&[("a", &[0, 1, 7]), ("b", &[2])]), &[0, 1, 2, 3]);
        assert_eq!(result["a"], [0, 1]);
        assert_eq!(result["b"], [2, 3]);
    }

    /// Random groups, claims (overlapping, stale, of partitions that no longer exist) and
    /// topic sizes: always balanced and complete; a member keeps of what it owned at least
    /// its uncontested claims, up to the smaller share.
    #[test]
    fn random_groups_are_always_balanced_and_sticky() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..2_000 {
            let partitions: Vec<i32> = (0..rng.random_range(0..40)).collect();
            let members = rng.random_range(1..8);
            let claims: Vec<Claim> = (0..members)
                .map(|m| Claim {
                    member: format!("m{m}"),
                    owned: (0..rng.random_range(0..10)).map(|_| rng.random_range(0..45)).collect(),
                    generation: rng.random_range(-1..5),
                })
                .collect();
            let result = assign(&claims, &partitions);
            assert_balanced(&result, &partitions, members);
            let floor = partitions.len() / members;
            for claim in &claims {
                let sole: BTreeSet<i32> = claim
                    .owned
                    .iter()
                    .copied()
                    .filter(|p| partitions.contains(p))
                    .filter(|p| claims.iter().filter(|c| c.owned.contains(p)).count() == 1)
                    .collect();
                let kept = result[&claim.member].iter().filter(|p| claim.owned.contains(p)).count();
                assert!(kept >= sole.len().min(floor), "{claims:?} -> {result:?}");
            }
        }
    }
}
