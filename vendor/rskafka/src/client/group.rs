//! store-events patch 7: the committed offsets of a consumer group.
//! store-events patch 8: membership of a consumer group, by the classic group protocol.
//!
//! A consumer that keeps its position elsewhere (in our case a ledger in S3) commits its
//! progress to a group as a consumer outside the group protocol (generation -1, no member
//! id), so that `kafka-consumer-groups.sh`, lag exporters, KEDA and Amazon MSK's
//! consumer-lag metrics see it. The group's coordinator is found with `FindCoordinator`
//! and kept until it fails or says it is no longer the coordinator.
//!
//! A member of the group (patch 8) joins (`JoinGroup`), gets its assignment (`SyncGroup`),
//! heartbeats and leaves through the same client, and commits as a member of its
//! generation. Patch 12 describes the group (`DescribeGroups`): its state, chosen
//! protocol and every member with its subscription and assignment, as
//! `kafka-consumer-groups.sh --describe --members` reads them. These are the protocol's steps only: when to rejoin, how to assign and
//! what to do with the partitions is the caller's (the Java client's
//! `ConsumerCoordinator`); every error comes back as the coordinator sent it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::{
    client::{
        Error, Result,
        error::{ProtocolError, RequestContext},
    },
    connection::{BrokerCache, BrokerConnection, BrokerConnector},
    messenger::RequestError,
    protocol::{
        messages::{
            COORDINATOR_KEY_TYPE_GROUP, DescribeGroupsRequest, FindCoordinatorRequest,
            HeartbeatRequest, JoinGroupRequest, JoinGroupRequestProtocol, LeaveGroupMember,
            LeaveGroupRequest, OffsetCommitRequest, OffsetCommitRequestPartition,
            OffsetCommitRequestTopic, ReadVersionedType, RequestBody, SyncGroupRequest,
            SyncGroupRequestAssignment, WriteVersionedType,
        },
        primitives::{Boolean, Bytes, Int8, Int32, Int64, NullableString, String_},
    },
};

pub use crate::protocol::messages::{
    CONSUMER_PROTOCOL_TYPE, ConsumerAssignment, ConsumerSubscription, TopicPartitions,
};

/// A member's place in one generation of the group: what every request after `JoinGroup`
/// names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The generation the member joined.
    pub generation_id: i32,
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The static member's instance id.
    pub group_instance_id: Option<String>,
}

/// How a member joins.
#[derive(Debug, Clone)]
pub struct JoinSettings {
    /// The member is dead to the coordinator without a heartbeat for this long.
    pub session_timeout: Duration,
    /// The longest the coordinator waits for each member to rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// A static member's instance id (`group.instance.id`); `None` for a dynamic member.
    pub group_instance_id: Option<String>,
    /// The protocol class, `consumer` for consumers (see `CONSUMER_PROTOCOL_TYPE`).
    pub protocol_type: String,
    /// The protocols (assignors) with their metadata, in order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
}

/// One member as the leader sees it after a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Its member id.
    pub member_id: String,
    /// Its instance id, if static.
    pub group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

/// The outcome of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// This member's place in the new generation.
    pub membership: Membership,
    /// The protocol the coordinator chose.
    pub protocol: String,
    /// The leader's member id.
    pub leader: String,
    /// Every member, when this member leads; empty otherwise.
    pub members: Vec<JoinedMember>,
}

impl Joined {
    /// Whether this member computes the assignment.
    pub fn is_leader(&self) -> bool {
        self.leader == self.membership.member_id
    }
}

/// store-events patch 12: one member as `DescribeGroups` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// Its member id.
    pub member_id: String,
    /// Its instance id, if static.
    pub group_instance_id: Option<String>,
    /// The client id it sent (`sales-consumer`, `console-consumer`, `rdkafka`, ...).
    pub client_id: String,
    /// The host it connected from, as the coordinator saw it (`/127.0.0.1`).
    pub client_host: String,
    /// Its metadata for the chosen protocol (a consumer's subscription).
    pub metadata: Vec<u8>,
    /// Its assignment; empty while the group is not `Stable`.
    pub assignment: Vec<u8>,
}

/// store-events patch 12: a group as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub state: String,
    /// The protocol class (`consumer`); empty for a group without members.
    pub protocol_type: String,
    /// The protocol (assignor) the coordinator chose; empty while rebalancing.
    pub protocol: String,
    /// The members.
    pub members: Vec<DescribedMember>,
}

/// How much longer than the rebalance timeout a `JoinGroup` may wait for its answer (the
/// Java client's 5 s).
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// Commits offsets of one consumer group.
#[derive(Debug)]
pub struct GroupClient {
    brokers: Arc<BrokerConnector>,
    group: String,
    coordinator: Mutex<Option<BrokerConnection>>,
}

impl GroupClient {
    pub(super) fn new(brokers: Arc<BrokerConnector>, group: String) -> Self {
        Self {
            brokers,
            group,
            coordinator: Mutex::new(None),
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Commits `offsets` (partition, next offset to read) of `topic` as a consumer outside
    /// the group protocol. Fails with the first partition's error, if any; a failure that
    /// says the coordinator moved makes the next call find it again.
    pub async fn commit_offsets(&self, topic: &str, offsets: &[(i32, i64)]) -> Result<()> {
        self.commit_offsets_as(None, topic, offsets).await
    }

    /// Commits `offsets` of `topic` as `member` (a member of the group's current
    /// generation), or outside the group protocol when `None`.
    pub async fn commit_offsets_as(
        &self,
        member: Option<&Membership>,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<()> {
        let request = OffsetCommitRequest {
            group_id: String_(self.group.clone()),
            generation_id: Int32(member.map_or(-1, |m| m.generation_id)),
            member_id: String_(member.map(|m| m.member_id.clone()).unwrap_or_default()),
            group_instance_id: NullableString(member.and_then(|m| m.group_instance_id.clone())),
            retention_time_ms: Int64(-1),
            topics: vec![OffsetCommitRequestTopic {
                name: String_(topic.to_owned()),
                partitions: offsets
                    .iter()
                    .map(|&(partition, offset)| OffsetCommitRequestPartition {
                        partition_index: Int32(partition),
                        committed_offset: Int64(offset),
                        committed_leader_epoch: Int32(-1),
                        committed_metadata: NullableString(None),
                    })
                    .collect(),
            }],
        };
        let response = self.send(request, None).await?;
        for topic in response.topics {
            for partition in topic.partitions {
                if let Some(error) = partition.error {
                    return Err(self
                        .failed(
                            error,
                            RequestContext::Partition(topic.name.0, partition.partition_index.0),
                        )
                        .await);
                }
            }
        }
        Ok(())
    }

    /// Joins the group (or rejoins it, with the member id of the last join; empty the
    /// first time). A dynamic member's first join is answered `MEMBER_ID_REQUIRED` with a
    /// member id (KIP-394); it joins again with that id at once. Waits for the rebalance
    /// to complete, up to the rebalance timeout.
    pub async fn join(&self, member_id: &str, settings: &JoinSettings) -> Result<Joined> {
        let mut member_id = member_id.to_owned();
        for _ in 0..2 {
            let request = JoinGroupRequest {
                group_id: String_(self.group.clone()),
                session_timeout_ms: Int32(millis(settings.session_timeout)),
                rebalance_timeout_ms: Int32(millis(settings.rebalance_timeout)),
                member_id: String_(member_id.clone()),
                group_instance_id: NullableString(settings.group_instance_id.clone()),
                protocol_type: String_(settings.protocol_type.clone()),
                protocols: settings
                    .protocols
                    .iter()
                    .map(|(name, metadata)| JoinGroupRequestProtocol {
                        name: String_(name.clone()),
                        metadata: Bytes(metadata.clone()),
                    })
                    .collect(),
            };
            let wait = settings.rebalance_timeout + JOIN_GRACE;
            let response = self.send(request, Some(wait)).await?;
            match response.error {
                None => {
                    return Ok(Joined {
                        membership: Membership {
                            generation_id: response.generation_id.0,
                            member_id: response.member_id.0,
                            group_instance_id: settings.group_instance_id.clone(),
                        },
                        protocol: response.protocol_name.0,
                        leader: response.leader.0,
                        members: response
                            .members
                            .into_iter()
                            .map(|m| JoinedMember {
                                member_id: m.member_id.0,
                                group_instance_id: m.group_instance_id.0,
                                metadata: m.metadata.0,
                            })
                            .collect(),
                    });
                }
                Some(ProtocolError::MemberIdRequired) if member_id.is_empty() => {
                    member_id = response.member_id.0;
                }
                Some(error) => return Err(self.failed(error, self.context()).await),
            }
        }
        Err(Error::InvalidResponse(
            "JoinGroup asked for a member id twice".to_owned(),
        ))
    }

    /// Sends the leader's `assignments` (member id, assignment; empty from the other
    /// members) and returns this member's assignment.
    pub async fn sync(
        &self,
        member: &Membership,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<u8>> {
        let request = SyncGroupRequest {
            group_id: String_(self.group.clone()),
            generation_id: Int32(member.generation_id),
            member_id: String_(member.member_id.clone()),
            group_instance_id: NullableString(member.group_instance_id.clone()),
            assignments: assignments
                .into_iter()
                .map(|(member_id, assignment)| SyncGroupRequestAssignment {
                    member_id: String_(member_id),
                    assignment: Bytes(assignment),
                })
                .collect(),
        };
        let response = self.send(request, None).await?;
        match response.error {
            None => Ok(response.assignment.0),
            Some(error) => Err(self.failed(error, self.context()).await),
        }
    }

    /// One heartbeat. `REBALANCE_IN_PROGRESS` (rejoin), `ILLEGAL_GENERATION`,
    /// `UNKNOWN_MEMBER_ID` and `FENCED_INSTANCE_ID` come back as errors for the caller.
    pub async fn heartbeat(&self, member: &Membership) -> Result<()> {
        let request = HeartbeatRequest {
            group_id: String_(self.group.clone()),
            generation_id: Int32(member.generation_id),
            member_id: String_(member.member_id.clone()),
            group_instance_id: NullableString(member.group_instance_id.clone()),
        };
        let response = self.send(request, None).await?;
        match response.error {
            None => Ok(()),
            Some(error) => Err(self.failed(error, self.context()).await),
        }
    }

    /// Leaves the group, so that it rebalances at once rather than after the session
    /// timeout. (A static member that means to come back does not call this.)
    pub async fn leave(&self, member: &Membership) -> Result<()> {
        let request = LeaveGroupRequest {
            group_id: String_(self.group.clone()),
            members: vec![LeaveGroupMember {
                member_id: String_(member.member_id.clone()),
                group_instance_id: NullableString(member.group_instance_id.clone()),
            }],
        };
        let response = self.send(request, None).await?;
        let error = response
            .error
            .or_else(|| response.members.into_iter().find_map(|m| m.error));
        match error {
            None => Ok(()),
            Some(error) => Err(self.failed(error, self.context()).await),
        }
    }

    /// store-events patch 12: the group as its coordinator sees it now (`DescribeGroups`).
    /// A group error (`GROUP_AUTHORIZATION_FAILED`, a coordinator that moved) comes back
    /// as an error; a group nobody ever joined is `Dead` with no member.
    pub async fn describe(&self) -> Result<GroupDescription> {
        let request = DescribeGroupsRequest {
            groups: vec![String_(self.group.clone())],
            include_authorized_operations: Boolean(false),
        };
        let response = self.send(request, None).await?;
        let group = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0 == self.group)
            .ok_or_else(|| {
                Error::InvalidResponse(format!("DescribeGroups did not describe {}", self.group))
            })?;
        if let Some(error) = group.error {
            return Err(self.failed(error, self.context()).await);
        }
        Ok(GroupDescription {
            state: group.group_state.0,
            protocol_type: group.protocol_type.0,
            protocol: group.protocol_data.0,
            members: group
                .members
                .into_iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.0,
                    group_instance_id: m.group_instance_id.0,
                    client_id: m.client_id.0,
                    client_host: m.client_host.0,
                    metadata: m.member_metadata.0,
                    assignment: m.member_assignment.0,
                })
                .collect(),
        })
    }

    fn context(&self) -> RequestContext {
        RequestContext::Group(self.group.clone())
    }

    /// Sends `request` to the coordinator, waiting up to `wait` when given (and the
    /// connection's request timeout otherwise); a broken connection is dropped, so that
    /// the next request finds the coordinator again.
    async fn send<R>(&self, request: R, wait: Option<Duration>) -> Result<R::ResponseBody>
    where
        R: RequestBody + Send + WriteVersionedType<Vec<u8>>,
        R::ResponseBody: ReadVersionedType<std::io::Cursor<Vec<u8>>>,
    {
        let coordinator = self.coordinator().await?;
        let response: Result<R::ResponseBody, RequestError> = match wait {
            Some(wait) => coordinator.request_within(request, wait).await,
            None => coordinator.request(request).await,
        };
        match response {
            Ok(response) => Ok(response),
            Err(e) => {
                *self.coordinator.lock().await = None;
                Err(e.into())
            }
        }
    }

    /// The error the coordinator answered; one that says the coordinator moved makes the
    /// next request find it again.
    async fn failed(&self, error: ProtocolError, request: RequestContext) -> Error {
        if matches!(
            error,
            ProtocolError::NotCoordinator
                | ProtocolError::CoordinatorNotAvailable
                | ProtocolError::CoordinatorLoadInProgress
        ) {
            *self.coordinator.lock().await = None;
        }
        Error::ServerError {
            protocol_error: error,
            error_message: None,
            request,
            response: None,
            is_virtual: false,
        }
    }

    /// The coordinator's connection, found and opened when there is none.
    async fn coordinator(&self) -> Result<BrokerConnection> {
        let mut slot = self.coordinator.lock().await;
        if let Some(coordinator) = slot.as_ref() {
            return Ok(Arc::clone(coordinator));
        }
        let request = FindCoordinatorRequest {
            key: String_(self.group.clone()),
            key_type: Int8(COORDINATOR_KEY_TYPE_GROUP),
        };
        let (broker, generation) = (&*self.brokers).get().await?;
        let response = match broker.request(&request).await {
            Ok(response) => response,
            Err(e) => {
                (&*self.brokers)
                    .invalidate("group client: connection broken", generation)
                    .await;
                return Err(e.into());
            }
        };
        if let Some(error) = response.error {
            return Err(Error::ServerError {
                protocol_error: error,
                error_message: response.error_message.0,
                request: RequestContext::Group(self.group.clone()),
                response: None,
                is_virtual: false,
            });
        }
        let id = response.node_id.0;
        // store-events patches 13 and 14: the coordinator's connection for requests it may
        // hold, shared by the group clients (and by the fetches from it that wait).
        let connection = match self.brokers.waiting_connection(id).await? {
            Some(connection) => connection,
            None => {
                // A broker the cluster's metadata did not list yet.
                self.brokers.refresh_metadata().await?;
                self.brokers.waiting_connection(id).await?.ok_or_else(|| {
                    Error::InvalidResponse(format!("coordinator {id} is not in the metadata"))
                })?
            }
        };
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }
}

/// Milliseconds for the protocol's INT32 fields, saturating.
fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::client::{ClientBuilder, fake_broker};

    use super::*;

    /// The coordinator is broker 1, until it says it no longer is (a coordinator moves
    /// when its broker restarts); then broker 2.
    #[tokio::test]
    async fn a_coordinator_that_moved_is_found_again_and_the_offsets_committed_there() {
        let groups = fake_broker::GroupScript {
            coordinator: Arc::new(|_, nth| if nth == 0 { 1 } else { 2 }),
            commit_error: Arc::new(|broker, _| if broker == 1 { 16 } else { 0 }), // NOT_COORDINATOR
            heartbeat_error: Arc::new(|_, _| 0),
            describe_error: Arc::new(|_, _| 0),
        };
        let cluster =
            fake_broker::start_with_groups(3, "t", Arc::new(|_, _| 0), Some(groups)).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let group = client.group_client("g");

        let within = Duration::from_secs(10);
        let first = tokio::time::timeout(within, group.commit_offsets("t", &[(0, 5), (1, 7)]))
            .await
            .unwrap();
        assert!(
            matches!(
                first,
                Err(Error::ServerError {
                    protocol_error: ProtocolError::NotCoordinator,
                    ..
                })
            ),
            "{first:?}"
        );
        tokio::time::timeout(within, group.commit_offsets("t", &[(0, 6), (1, 7)]))
            .await
            .unwrap()
            .unwrap();
        let commits = cluster.commits.lock().unwrap().clone();
        let expected = vec![("t".to_owned(), 0, 6), ("t".to_owned(), 1, 7)];
        assert_eq!(commits, [(2, "g".to_owned(), -1, expected)]);
    }

    /// store-events patch 13: the group clients of one client (a consumer's membership
    /// and its offset committer) share one connection to the coordinator.
    #[tokio::test]
    async fn group_clients_share_the_coordinators_connection() {
        use std::sync::atomic::Ordering;

        let groups = fake_broker::GroupScript {
            coordinator: Arc::new(|_, _| 1),
            commit_error: Arc::new(|_, _| 0),
            heartbeat_error: Arc::new(|_, _| 0),
            describe_error: Arc::new(|_, _| 0),
        };
        let cluster =
            fake_broker::start_with_groups(2, "t", Arc::new(|_, _| 0), Some(groups)).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let (membership, committer) = (client.group_client("g"), client.group_client("g"));
        let within = Duration::from_secs(10);
        for group in [&membership, &committer, &membership] {
            tokio::time::timeout(within, group.commit_offsets("t", &[(0, 5)]))
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(cluster.commits.lock().unwrap().len(), 3);
        // Broker 0: the bootstrap connection (metadata, FindCoordinator); broker 1, the
        // coordinator: one connection for both group clients.
        let open: Vec<usize> = cluster
            .open
            .iter()
            .map(|o| o.load(Ordering::SeqCst))
            .collect();
        assert_eq!(open, [1, 1]);
    }

    /// store-events patch 8: a dynamic member's first join is answered
    /// `MEMBER_ID_REQUIRED` with a member id; the client joins again with it and gets the
    /// generation, as its leader, with its own metadata back; a heartbeat's error comes
    /// back as the coordinator sent it.
    #[tokio::test]
    async fn a_first_join_asks_for_a_member_id_and_joins_again_with_it() {
        let groups = fake_broker::GroupScript {
            coordinator: Arc::new(|_, _| 0),
            commit_error: Arc::new(|_, _| 0),
            heartbeat_error: Arc::new(|_, nth| if nth == 0 { 0 } else { 27 }), // REBALANCE_IN_PROGRESS
            describe_error: Arc::new(|_, _| 0),
        };
        let cluster =
            fake_broker::start_with_groups(1, "t", Arc::new(|_, _| 0), Some(groups)).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let group = client.group_client("g");
        let settings = JoinSettings {
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            group_instance_id: None,
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_owned(),
            protocols: vec![("sticky".to_owned(), vec![1, 2, 3])],
        };

        let within = Duration::from_secs(10);
        let joined = tokio::time::timeout(within, group.join("", &settings))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(joined.membership.member_id, "m-1");
        assert_eq!(joined.membership.generation_id, 1);
        assert_eq!(joined.protocol, "sticky");
        assert!(joined.is_leader());
        assert_eq!(
            joined.members,
            [JoinedMember {
                member_id: "m-1".to_owned(),
                group_instance_id: None,
                metadata: vec![1, 2, 3],
            }]
        );

        let membership = joined.membership;
        tokio::time::timeout(within, group.heartbeat(&membership))
            .await
            .unwrap()
            .unwrap();
        let second = tokio::time::timeout(within, group.heartbeat(&membership))
            .await
            .unwrap();
        assert!(
            matches!(
                second,
                Err(Error::ServerError {
                    protocol_error: ProtocolError::RebalanceInProgress,
                    ..
                })
            ),
            "{second:?}"
        );
    }

    /// store-events patch 12: the coordinator describes the group with its members'
    /// metadata and assignments; a group error comes back typed, and after
    /// `NOT_COORDINATOR` the next call finds the coordinator again.
    #[tokio::test]
    async fn a_group_is_described_with_its_members_and_a_group_error_is_typed() {
        let groups = fake_broker::GroupScript {
            coordinator: Arc::new(|_, nth| if nth == 0 { 1 } else { 2 }),
            commit_error: Arc::new(|_, _| 0),
            heartbeat_error: Arc::new(|_, _| 0),
            describe_error: Arc::new(|broker, _| if broker == 1 { 16 } else { 0 }), // NOT_COORDINATOR
        };
        let cluster =
            fake_broker::start_with_groups(3, "t", Arc::new(|_, _| 0), Some(groups)).await;
        let client = ClientBuilder::new(vec![cluster.addresses[0].clone()])
            .build()
            .await
            .unwrap();
        let group = client.group_client("g");

        let within = Duration::from_secs(10);
        let first = tokio::time::timeout(within, group.describe())
            .await
            .unwrap();
        assert!(
            matches!(
                first,
                Err(Error::ServerError {
                    protocol_error: ProtocolError::NotCoordinator,
                    ..
                })
            ),
            "{first:?}"
        );
        let described = tokio::time::timeout(within, group.describe())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            described,
            GroupDescription {
                state: "Stable".to_owned(),
                protocol_type: "consumer".to_owned(),
                protocol: "sticky".to_owned(),
                members: vec![DescribedMember {
                    member_id: "m-1".to_owned(),
                    group_instance_id: None,
                    client_id: "c".to_owned(),
                    client_host: "/127.0.0.1".to_owned(),
                    metadata: vec![1],
                    assignment: vec![2],
                }],
            }
        );
    }
}
