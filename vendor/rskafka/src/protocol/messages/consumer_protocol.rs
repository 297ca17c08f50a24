//! store-events patch 8: the consumer protocol's embedded messages, the `metadata` a
//! consumer sends in `JoinGroup` (`ConsumerProtocolSubscription`) and the `assignment` the
//! leader hands out through `SyncGroup` (`ConsumerProtocolAssignment`). Kafka's tools read
//! them (`kafka-consumer-groups.sh --describe` shows each member's partitions from the
//! assignment), so a group of `protocol_type` `consumer` must write them in this form.
//!
//! Written at subscription version 1 (with `owned_partitions`) and assignment version 0;
//! read at any version, ignoring the fields later versions append, as the Java client does.
//!
//! <https://github.com/apache/kafka/blob/trunk/clients/src/main/resources/common/message/ConsumerProtocolSubscription.json>
//! <https://github.com/apache/kafka/blob/trunk/clients/src/main/resources/common/message/ConsumerProtocolAssignment.json>

use std::io::Cursor;

use crate::protocol::{
    primitives::{Array, ArrayRef, Int16, Int32, NullableBytes, String_},
    traits::{ReadError, ReadType, WriteError, WriteType},
};

/// The `protocol_type` of consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Partitions of one topic.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct TopicPartitions {
    /// The topic.
    pub topic: String,

    /// Its partitions.
    pub partitions: Vec<i32>,
}

impl<W: std::io::Write> WriteType<W> for TopicPartitions {
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        String_(self.topic.clone()).write(writer)?;
        let partitions: Vec<Int32> = self.partitions.iter().copied().map(Int32).collect();
        ArrayRef(Some(&partitions)).write(writer)
    }
}

impl<R: std::io::Read> ReadType<R> for TopicPartitions {
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        Ok(Self {
            topic: String_::read(reader)?.0,
            partitions: Array::<Int32>::read(reader)?
                .0
                .unwrap_or_default()
                .into_iter()
                .map(|p| p.0)
                .collect(),
        })
    }
}

/// What a member subscribes to, and what it owned in the last generation.
#[derive(Debug, PartialEq, Eq, Clone, Default)]
pub struct ConsumerSubscription {
    /// The topics.
    pub topics: Vec<String>,

    /// Assignor-specific data.
    pub user_data: Option<Vec<u8>>,

    /// The partitions the member owned (version 1 and up).
    pub owned_partitions: Vec<TopicPartitions>,
}

impl ConsumerSubscription {
    /// The subscription at version 1.
    pub fn encode(&self) -> Result<Vec<u8>, WriteError> {
        let mut bytes = Vec::new();
        Int16(1).write(&mut bytes)?;
        let topics: Vec<String_> = self.topics.iter().cloned().map(String_).collect();
        ArrayRef(Some(&topics)).write(&mut bytes)?;
        NullableBytes(self.user_data.clone()).write(&mut bytes)?;
        ArrayRef(Some(&self.owned_partitions)).write(&mut bytes)?;
        Ok(bytes)
    }

    /// A subscription of any version.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReadError> {
        let mut reader = Cursor::new(bytes);
        let version = Int16::read(&mut reader)?.0;
        if version < 0 {
            return Err(ReadError::Malformed(
                format!("subscription version {version}").into(),
            ));
        }
        let topics = Array::<String_>::read(&mut reader)?
            .0
            .unwrap_or_default()
            .into_iter()
            .map(|t| t.0)
            .collect();
        let user_data = NullableBytes::read(&mut reader)?.0;
        let owned_partitions = if version >= 1 {
            Array::read(&mut reader)?.0.unwrap_or_default()
        } else {
            Vec::new()
        };
        Ok(Self {
            topics,
            user_data,
            owned_partitions,
        })
    }
}

/// The partitions the leader assigned to a member.
#[derive(Debug, PartialEq, Eq, Clone, Default)]
pub struct ConsumerAssignment {
    /// The partitions.
    pub assigned_partitions: Vec<TopicPartitions>,

    /// Assignor-specific data.
    pub user_data: Option<Vec<u8>>,
}

impl ConsumerAssignment {
    /// The assignment at version 0.
    pub fn encode(&self) -> Result<Vec<u8>, WriteError> {
        let mut bytes = Vec::new();
        Int16(0).write(&mut bytes)?;
        ArrayRef(Some(&self.assigned_partitions)).write(&mut bytes)?;
        NullableBytes(self.user_data.clone()).write(&mut bytes)?;
        Ok(bytes)
    }

    /// An assignment of any version; empty bytes (what the coordinator sends a member the
    /// leader gave nothing) are an empty assignment.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReadError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let mut reader = Cursor::new(bytes);
        let version = Int16::read(&mut reader)?.0;
        if version < 0 {
            return Err(ReadError::Malformed(
                format!("assignment version {version}").into(),
            ));
        }
        Ok(Self {
            assigned_partitions: Array::read(&mut reader)?.0.unwrap_or_default(),
            user_data: NullableBytes::read(&mut reader)?.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_is_written_at_version_1() {
        let subscription = ConsumerSubscription {
            topics: vec!["t".to_owned()],
            user_data: None,
            owned_partitions: vec![TopicPartitions {
                topic: "t".to_owned(),
                partitions: vec![2],
            }],
        };
        let bytes = subscription.encode().unwrap();
        let expected = [
            0, 1, // version
            0, 0, 0, 1, 0, 1, b't', // topics
            0xff, 0xff, 0xff, 0xff, // user_data: null
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 2, // owned_partitions
        ];
        assert_eq!(bytes, expected);
        assert_eq!(ConsumerSubscription::decode(&bytes).unwrap(), subscription);
    }

    #[test]
    fn newer_subscriptions_are_read_for_what_version_1_has() {
        // Version 0 (no owned partitions) and version 3 (generation and rack appended).
        let v0 = [0, 0, 0, 0, 0, 1, 0, 1, b'a', 0, 0, 0, 1, 9];
        let read = ConsumerSubscription::decode(&v0).unwrap();
        assert_eq!(read.topics, ["a"]);
        assert_eq!(read.user_data, Some(vec![9]));
        assert!(read.owned_partitions.is_empty());
        let mut v3 = vec![0, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        v3.extend([0, 0, 0, 7, 0xff, 0xff]); // generation 7, rack null
        assert_eq!(
            ConsumerSubscription::decode(&v3).unwrap(),
            ConsumerSubscription::default()
        );
    }

    #[test]
    fn an_assignment_is_written_at_version_0_and_empty_bytes_assign_nothing() {
        let assignment = ConsumerAssignment {
            assigned_partitions: vec![TopicPartitions {
                topic: "t".to_owned(),
                partitions: vec![0, 3],
            }],
            user_data: None,
        };
        let bytes = assignment.encode().unwrap();
        let expected = [
            0, 0, // version
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, // partitions
            0xff, 0xff, 0xff, 0xff, // user_data: null
        ];
        assert_eq!(bytes, expected);
        assert_eq!(ConsumerAssignment::decode(&bytes).unwrap(), assignment);
        assert_eq!(
            ConsumerAssignment::decode(&[]).unwrap(),
            ConsumerAssignment::default()
        );
        assert!(ConsumerAssignment::decode(&[0, 0, 0]).is_err());
    }
}
