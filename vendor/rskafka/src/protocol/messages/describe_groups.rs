//! store-events patch 12: `DescribeGroups`, version 4 (the first with each member's
//! `group_instance_id`; not flexible). Kafka 2.4 to 4.x serve it.
//!
//! What `kafka-consumer-groups.sh --describe --members` reads: a group's state, the
//! protocol its coordinator chose, and every member with its client id, host, metadata
//! (for a consumer, its subscription) and assignment.
//!
//! <https://kafka.apache.org/protocol#The_Messages_DescribeGroups>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{Array, ArrayRef, Boolean, Bytes, Int16, Int32, NullableString, String_},
    traits::{ReadError, ReadType, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

/// The only version spoken.
const VERSION: i16 = 4;

#[derive(Debug, PartialEq, Eq)]
pub struct DescribeGroupsRequest {
    /// The groups to describe.
    pub groups: Vec<String_>,

    /// Whether to return the operations the client may perform on each group.
    pub include_authorized_operations: Boolean,
}

impl<W: Write> WriteVersionedType<W> for DescribeGroupsRequest {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        assert_eq!(version.0.0, VERSION);
        ArrayRef(Some(&self.groups)).write(writer)?;
        self.include_authorized_operations.write(writer)?;
        Ok(())
    }
}

impl RequestBody for DescribeGroupsRequest {
    type ResponseBody = DescribeGroupsResponse;

    const API_KEY: ApiKey = ApiKey::DescribeGroups;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(VERSION)), ApiVersion(Int16(VERSION)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(5));
}

#[derive(Debug, PartialEq, Eq)]
pub struct DescribedGroupMember {
    /// The member id the coordinator gave.
    pub member_id: String_,

    /// Its instance id, if static.
    pub group_instance_id: NullableString,

    /// The client id it sent.
    pub client_id: String_,

    /// The host it connected from.
    pub client_host: String_,

    /// Its metadata for the chosen protocol (a consumer's subscription).
    pub member_metadata: Bytes,

    /// Its assignment (a consumer's `ConsumerProtocolAssignment`); empty while the group
    /// is not stable.
    pub member_assignment: Bytes,
}

impl<R: Read> ReadType<R> for DescribedGroupMember {
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        Ok(Self {
            member_id: String_::read(reader)?,
            group_instance_id: NullableString::read(reader)?,
            client_id: String_::read(reader)?,
            client_host: String_::read(reader)?,
            member_metadata: Bytes::read(reader)?,
            member_assignment: Bytes::read(reader)?,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DescribedGroup {
    /// The group's error, if any (`GROUP_AUTHORIZATION_FAILED`, `NOT_COORDINATOR`, ...).
    pub error: Option<Error>,

    /// The group id.
    pub group_id: String_,

    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub group_state: String_,

    /// The protocol class, `consumer` for consumers.
    pub protocol_type: String_,

    /// The protocol the coordinator chose (a consumer group's assignor); empty while
    /// rebalancing.
    pub protocol_data: String_,

    /// The members.
    pub members: Vec<DescribedGroupMember>,

    /// The operations the client may perform (`i32::MIN` when not asked for).
    pub authorized_operations: Int32,
}

impl<R: Read> ReadType<R> for DescribedGroup {
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        Ok(Self {
            error: Error::new(Int16::read(reader)?.0),
            group_id: String_::read(reader)?,
            group_state: String_::read(reader)?,
            protocol_type: String_::read(reader)?,
            protocol_data: String_::read(reader)?,
            members: Array::read(reader)?.0.unwrap_or_default(),
            authorized_operations: Int32::read(reader)?,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DescribeGroupsResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// Each group asked for.
    pub groups: Vec<DescribedGroup>,
}

impl<R: Read> ReadVersionedType<R> for DescribeGroupsResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        assert_eq!(version.0.0, VERSION);
        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            groups: Array::read(reader)?.0.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_is_written_as_the_protocol_says() {
        let request = DescribeGroupsRequest {
            groups: vec![String_("g".to_owned())],
            include_authorized_operations: Boolean(false),
        };
        let mut bytes = Vec::new();
        request
            .write_versioned(&mut bytes, ApiVersion(Int16(4)))
            .unwrap();
        // groups: [1 x "g"], include_authorized_operations: false
        assert_eq!(bytes, [0, 0, 0, 1, 0, 1, b'g', 0]);
    }

    #[test]
    fn a_stable_group_with_one_static_member_is_read_as_the_protocol_says() {
        let mut bytes = vec![0, 0, 0, 7]; // throttle_time_ms
        bytes.extend([0, 0, 0, 1]); // one group
        bytes.extend([0, 0]); // no error
        bytes.extend([0, 1, b'g']);
        bytes.extend([0, 6]);
        bytes.extend(b"Stable");
        bytes.extend([0, 8]);
        bytes.extend(b"consumer");
        bytes.extend([0, 5]);
        bytes.extend(b"range");
        bytes.extend([0, 0, 0, 1]); // one member
        bytes.extend([0, 1, b'm']);
        bytes.extend([0, 1, b'i']); // group_instance_id
        bytes.extend([0, 1, b'c']);
        bytes.extend([0, 10]);
        bytes.extend(b"/127.0.0.1");
        bytes.extend([0, 0, 0, 2, 1, 2]); // metadata
        bytes.extend([0, 0, 0, 1, 3]); // assignment
        bytes.extend(i32::MIN.to_be_bytes()); // authorized_operations

        let response =
            DescribeGroupsResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(4)))
                .unwrap();
        assert_eq!(
            response,
            DescribeGroupsResponse {
                throttle_time_ms: Int32(7),
                groups: vec![DescribedGroup {
                    error: None,
                    group_id: String_("g".to_owned()),
                    group_state: String_("Stable".to_owned()),
                    protocol_type: String_("consumer".to_owned()),
                    protocol_data: String_("range".to_owned()),
                    members: vec![DescribedGroupMember {
                        member_id: String_("m".to_owned()),
                        group_instance_id: NullableString(Some("i".to_owned())),
                        client_id: String_("c".to_owned()),
                        client_host: String_("/127.0.0.1".to_owned()),
                        member_metadata: Bytes(vec![1, 2]),
                        member_assignment: Bytes(vec![3]),
                    }],
                    authorized_operations: Int32(i32::MIN),
                }],
            }
        );
    }

    #[test]
    fn a_group_error_is_read_with_no_members() {
        let mut bytes = vec![0, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend([0, 30]); // GROUP_AUTHORIZATION_FAILED
        bytes.extend([0, 1, b'g']);
        bytes.extend([0, 4]);
        bytes.extend(b"Dead");
        bytes.extend([0, 0, 0, 0]); // protocol type and data, empty
        bytes.extend([0, 0, 0, 0]); // no member
        bytes.extend(i32::MIN.to_be_bytes());
        let response =
            DescribeGroupsResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(4)))
                .unwrap();
        assert_eq!(response.groups.len(), 1);
        assert_eq!(
            response.groups[0].error,
            Some(Error::GroupAuthorizationFailed)
        );
        assert!(response.groups[0].members.is_empty());
    }
}
