//! store-events patch 7: the committed offsets of a consumer group.
//!
//! A consumer that keeps its position elsewhere (in our case a ledger in S3) commits its
//! progress to a group as a consumer outside the group protocol (generation -1, no member
//! id), so that `kafka-consumer-groups.sh`, lag exporters, KEDA and Amazon MSK's
//! consumer-lag metrics see it. The group's coordinator is found with `FindCoordinator`
//! and kept until it fails or says it is no longer the coordinator.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::{
    client::{
        Error, Result,
        error::{ProtocolError, RequestContext},
    },
    connection::{BrokerCache, BrokerConnection, BrokerConnector},
    protocol::{
        messages::{
            COORDINATOR_KEY_TYPE_GROUP, FindCoordinatorRequest, OffsetCommitRequest,
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        },
        primitives::{Int8, Int32, Int64, NullableString, String_},
    },
};

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
        let request = OffsetCommitRequest {
            group_id: String_(self.group.clone()),
            generation_id: Int32(-1),
            member_id: String_(String::new()),
            group_instance_id: NullableString(None),
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
        let coordinator = self.coordinator().await?;
        let response = match coordinator.request(&request).await {
            Ok(response) => response,
            Err(e) => {
                *self.coordinator.lock().await = None;
                return Err(e.into());
            }
        };
        for topic in response.topics {
            for partition in topic.partitions {
                let Some(error) = partition.error else {
                    continue;
                };
                if matches!(
                    error,
                    ProtocolError::NotCoordinator
                        | ProtocolError::CoordinatorNotAvailable
                        | ProtocolError::CoordinatorLoadInProgress
                ) {
                    *self.coordinator.lock().await = None;
                }
                return Err(Error::ServerError {
                    protocol_error: error,
                    error_message: None,
                    request: RequestContext::Partition(topic.name.0, partition.partition_index.0),
                    response: None,
                    is_virtual: false,
                });
            }
        }
        Ok(())
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
        let connection = match self.brokers.connect(id).await? {
            Some(connection) => connection,
            None => {
                // A broker the cluster's metadata did not list yet.
                self.brokers.refresh_metadata().await?;
                self.brokers.connect(id).await?.ok_or_else(|| {
                    Error::InvalidResponse(format!("coordinator {id} is not in the metadata"))
                })?
            }
        };
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }
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
}
