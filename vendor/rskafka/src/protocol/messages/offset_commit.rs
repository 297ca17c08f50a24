//! store-events patch 7: `OffsetCommit`, versions 2 to 7 (not flexible; versions 0 and 1
//! are gone from Kafka 4, versions 8 and up are flexible).
//!
//! <https://kafka.apache.org/protocol#The_Messages_OffsetCommit>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    messages::{read_versioned_array, write_versioned_array},
    primitives::{Int16, Int32, Int64, NullableString, String_},
    traits::{ReadType, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

#[derive(Debug, PartialEq, Eq)]
pub struct OffsetCommitRequestPartition {
    /// The partition index.
    pub partition_index: Int32,

    /// The offset to commit: the next offset to read.
    pub committed_offset: Int64,

    /// The leader epoch of the last consumed record, -1 when unknown.
    ///
    /// Added in version 6.
    pub committed_leader_epoch: Int32,

    /// Metadata the consumer keeps with the offset.
    pub committed_metadata: NullableString,
}

impl<W> WriteVersionedType<W> for OffsetCommitRequestPartition
where
    W: Write,
{
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!((2..=7).contains(&v));

        self.partition_index.write(writer)?;
        self.committed_offset.write(writer)?;
        if v >= 6 {
            self.committed_leader_epoch.write(writer)?;
        }
        self.committed_metadata.write(writer)?;
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct OffsetCommitRequestTopic {
    /// The topic name.
    pub name: String_,

    /// Each partition to commit offsets for.
    pub partitions: Vec<OffsetCommitRequestPartition>,
}

impl<W> WriteVersionedType<W> for OffsetCommitRequestTopic
where
    W: Write,
{
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!((2..=7).contains(&v));

        self.name.write(writer)?;
        write_versioned_array(writer, version, Some(&self.partitions))?;
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    /// The group id.
    pub group_id: String_,

    /// The generation of the group, -1 for a consumer outside the group protocol.
    pub generation_id: Int32,

    /// The member id given by the coordinator, empty outside the group protocol.
    pub member_id: String_,

    /// The static member's instance id.
    ///
    /// Added in version 7.
    pub group_instance_id: NullableString,

    /// How long to keep the offsets, -1 for the broker's setting.
    ///
    /// Versions 2 to 4.
    pub retention_time_ms: Int64,

    /// The topics to commit offsets for.
    pub topics: Vec<OffsetCommitRequestTopic>,
}

impl<W> WriteVersionedType<W> for OffsetCommitRequest
where
    W: Write,
{
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!((2..=7).contains(&v));

        self.group_id.write(writer)?;
        self.generation_id.write(writer)?;
        self.member_id.write(writer)?;
        if v >= 7 {
            self.group_instance_id.write(writer)?;
        }
        if v <= 4 {
            self.retention_time_ms.write(writer)?;
        }
        write_versioned_array(writer, version, Some(&self.topics))?;
        Ok(())
    }
}

impl RequestBody for OffsetCommitRequest {
    type ResponseBody = OffsetCommitResponse;

    const API_KEY: ApiKey = ApiKey::OffsetCommit;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(2)), ApiVersion(Int16(7)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(8));
}

#[derive(Debug, PartialEq, Eq)]
pub struct OffsetCommitResponsePartition {
    /// The partition index.
    pub partition_index: Int32,

    /// The error, if any.
    pub error: Option<Error>,
}

impl<R> ReadVersionedType<R> for OffsetCommitResponsePartition
where
    R: Read,
{
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!((2..=7).contains(&v));

        Ok(Self {
            partition_index: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct OffsetCommitResponseTopic {
    /// The topic name.
    pub name: String_,

    /// The outcome of each partition.
    pub partitions: Vec<OffsetCommitResponsePartition>,
}

impl<R> ReadVersionedType<R> for OffsetCommitResponseTopic
where
    R: Read,
{
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!((2..=7).contains(&v));

        Ok(Self {
            name: String_::read(reader)?,
            partitions: read_versioned_array(reader, version)?.unwrap_or_default(),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct OffsetCommitResponse {
    /// The duration in milliseconds for which the request was throttled.
    ///
    /// Added in version 3.
    pub throttle_time_ms: Option<Int32>,

    /// The outcome of each topic.
    pub topics: Vec<OffsetCommitResponseTopic>,
}

impl<R> ReadVersionedType<R> for OffsetCommitResponse
where
    R: Read,
{
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!((2..=7).contains(&v));

        Ok(Self {
            throttle_time_ms: (v >= 3).then(|| Int32::read(reader)).transpose()?,
            topics: read_versioned_array(reader, version)?.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn request() -> OffsetCommitRequest {
        OffsetCommitRequest {
            group_id: String_("g".to_owned()),
            generation_id: Int32(-1),
            member_id: String_(String::new()),
            group_instance_id: NullableString(None),
            retention_time_ms: Int64(-1),
            topics: vec![OffsetCommitRequestTopic {
                name: String_("t".to_owned()),
                partitions: vec![OffsetCommitRequestPartition {
                    partition_index: Int32(1),
                    committed_offset: Int64(300),
                    committed_leader_epoch: Int32(-1),
                    committed_metadata: NullableString(None),
                }],
            }],
        }
    }

    fn written(version: i16) -> Vec<u8> {
        let mut bytes = Vec::new();
        request()
            .write_versioned(&mut bytes, ApiVersion(Int16(version)))
            .unwrap();
        bytes
    }

    const GROUP: [u8; 3] = [0, 1, b'g'];
    const GENERATION: [u8; 4] = [0xff; 4];
    const MEMBER: [u8; 2] = [0, 0];
    const NULL_STRING: [u8; 2] = [0xff, 0xff];
    const RETENTION: [u8; 8] = [0xff; 8];
    const TOPIC: [u8; 7] = [0, 0, 0, 1, 0, 1, b't']; // one topic, its name
    const PARTITION: [u8; 16] = [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 44]; // one, index 1, offset 300
    const EPOCH: [u8; 4] = [0xff; 4];

    #[test]
    fn each_version_writes_the_fields_it_has() {
        let v2: Vec<u8> = [
            &GROUP[..],
            &GENERATION,
            &MEMBER,
            &RETENTION,
            &TOPIC,
            &PARTITION,
            &NULL_STRING,
        ]
        .concat();
        assert_eq!(written(2), v2);
        assert_eq!(written(4), v2);
        let v5: Vec<u8> = [
            &GROUP[..],
            &GENERATION,
            &MEMBER,
            &TOPIC,
            &PARTITION,
            &NULL_STRING,
        ]
        .concat();
        assert_eq!(written(5), v5);
        let v6: Vec<u8> = [
            &GROUP[..],
            &GENERATION,
            &MEMBER,
            &TOPIC,
            &PARTITION,
            &EPOCH,
            &NULL_STRING,
        ]
        .concat();
        assert_eq!(written(6), v6);
        let v7: Vec<u8> = [
            &GROUP[..],
            &GENERATION,
            &MEMBER,
            &NULL_STRING,
            &TOPIC,
            &PARTITION,
            &EPOCH,
            &NULL_STRING,
        ]
        .concat();
        assert_eq!(written(7), v7);
    }

    #[test]
    fn the_response_is_read_with_and_without_throttle_time() {
        let topics = [
            0, 0, 0, 1, 0, 1, b't', // one topic, "t"
            0, 0, 0, 2, // two partitions
            0, 0, 0, 0, 0, 0, // 0: no error
            0, 0, 0, 1, 0, 25, // 1: UNKNOWN_MEMBER_ID
        ];
        let expected = |throttle_time_ms| OffsetCommitResponse {
            throttle_time_ms,
            topics: vec![OffsetCommitResponseTopic {
                name: String_("t".to_owned()),
                partitions: vec![
                    OffsetCommitResponsePartition {
                        partition_index: Int32(0),
                        error: None,
                    },
                    OffsetCommitResponsePartition {
                        partition_index: Int32(1),
                        error: Some(Error::UnknownMemberId),
                    },
                ],
            }],
        };
        let v2 =
            OffsetCommitResponse::read_versioned(&mut Cursor::new(topics), ApiVersion(Int16(2)));
        assert_eq!(v2.unwrap(), expected(None));
        let with_throttle: Vec<u8> = [&[0, 0, 0, 7][..], &topics].concat();
        let v7 = OffsetCommitResponse::read_versioned(
            &mut Cursor::new(with_throttle),
            ApiVersion(Int16(7)),
        );
        assert_eq!(v7.unwrap(), expected(Some(Int32(7))));
    }
}
