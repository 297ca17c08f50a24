//! store-events patch 8: `JoinGroup`, version 5 (the first with `group_instance_id`, for
//! static membership; not flexible). Kafka 2.3 to 4.x serve it.
//!
//! <https://kafka.apache.org/protocol#The_Messages_JoinGroup>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{Array, ArrayRef, Bytes, Int16, Int32, NullableString, String_},
    traits::{ReadError, ReadType, WriteError, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

/// The only version spoken.
const VERSION: i16 = 5;

#[derive(Debug, PartialEq, Eq)]
pub struct JoinGroupRequestProtocol {
    /// The protocol name (for a consumer, the assignor's name).
    pub name: String_,

    /// The protocol metadata (for a consumer, its `ConsumerProtocolSubscription`).
    pub metadata: Bytes,
}

impl<W: Write> WriteType<W> for JoinGroupRequestProtocol {
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        self.name.write(writer)?;
        self.metadata.write(writer)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct JoinGroupRequest {
    /// The group id.
    pub group_id: String_,

    /// The coordinator considers the member dead if it receives no heartbeat after this.
    pub session_timeout_ms: Int32,

    /// The longest the coordinator waits for each member to rejoin when rebalancing.
    pub rebalance_timeout_ms: Int32,

    /// The member id the coordinator gave, empty on the first join.
    pub member_id: String_,

    /// The static member's instance id, `None` for a dynamic member.
    pub group_instance_id: NullableString,

    /// The protocol class, `consumer` for consumers.
    pub protocol_type: String_,

    /// The protocols the member supports, in order of preference.
    pub protocols: Vec<JoinGroupRequestProtocol>,
}

impl<W: Write> WriteVersionedType<W> for JoinGroupRequest {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        assert_eq!(version.0.0, VERSION);
        self.group_id.write(writer)?;
        self.session_timeout_ms.write(writer)?;
        self.rebalance_timeout_ms.write(writer)?;
        self.member_id.write(writer)?;
        self.group_instance_id.write(writer)?;
        self.protocol_type.write(writer)?;
        ArrayRef(Some(&self.protocols)).write(writer)?;
        Ok(())
    }
}

impl RequestBody for JoinGroupRequest {
    type ResponseBody = JoinGroupResponse;

    const API_KEY: ApiKey = ApiKey::JoinGroup;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(VERSION)), ApiVersion(Int16(VERSION)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(6));
}

#[derive(Debug, PartialEq, Eq)]
pub struct JoinGroupResponseMember {
    /// The member id.
    pub member_id: String_,

    /// Its instance id, if static.
    pub group_instance_id: NullableString,

    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

impl<R: Read> ReadType<R> for JoinGroupResponseMember {
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        Ok(Self {
            member_id: String_::read(reader)?,
            group_instance_id: NullableString::read(reader)?,
            metadata: Bytes::read(reader)?,
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct JoinGroupResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// The error, if any.
    pub error: Option<Error>,

    /// The generation of the group.
    pub generation_id: Int32,

    /// The protocol the coordinator chose.
    pub protocol_name: String_,

    /// The leader's member id: the leader computes the assignment.
    pub leader: String_,

    /// This member's id.
    pub member_id: String_,

    /// Every member with its metadata; empty unless this member is the leader.
    pub members: Vec<JoinGroupResponseMember>,
}

impl<R: Read> ReadVersionedType<R> for JoinGroupResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        assert_eq!(version.0.0, VERSION);
        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
            generation_id: Int32::read(reader)?,
            protocol_name: String_::read(reader)?,
            leader: String_::read(reader)?,
            member_id: String_::read(reader)?,
            members: Array::read(reader)?.0.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_is_written_as_the_protocol_says() {
        let request = JoinGroupRequest {
            group_id: String_("g".to_owned()),
            session_timeout_ms: Int32(30_000),
            rebalance_timeout_ms: Int32(60_000),
            member_id: String_(String::new()),
            group_instance_id: NullableString(Some("i-0".to_owned())),
            protocol_type: String_("consumer".to_owned()),
            protocols: vec![JoinGroupRequestProtocol {
                name: String_("s".to_owned()),
                metadata: Bytes(vec![7, 8]),
            }],
        };
        let mut bytes = Vec::new();
        request
            .write_versioned(&mut bytes, ApiVersion(Int16(5)))
            .unwrap();
        let mut expected = vec![0, 1, b'g']; // group_id
        expected.extend([0, 0, 0x75, 0x30]); // session_timeout_ms 30000
        expected.extend([0, 0, 0xea, 0x60]); // rebalance_timeout_ms 60000
        expected.extend([0, 0]); // member_id ""
        expected.extend([0, 3, b'i', b'-', b'0']); // group_instance_id
        expected.extend([0, 8]);
        expected.extend(b"consumer"); // protocol_type
        expected.extend([0, 0, 0, 1, 0, 1, b's', 0, 0, 0, 2, 7, 8]); // [name, metadata]
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_response_is_read_as_the_protocol_says() {
        let mut bytes = vec![0, 0, 0, 0, 0, 0]; // throttle, no error
        bytes.extend([0, 0, 0, 4]); // generation 4
        bytes.extend([0, 1, b's']); // protocol_name
        bytes.extend([0, 2, b'm', b'1']); // leader
        bytes.extend([0, 2, b'm', b'1']); // member_id
        bytes.extend([0, 0, 0, 1, 0, 2, b'm', b'1', 0xff, 0xff, 0, 0, 0, 1, 9]); // members
        let response =
            JoinGroupResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(5)))
                .unwrap();
        assert_eq!(
            response,
            JoinGroupResponse {
                throttle_time_ms: Int32(0),
                error: None,
                generation_id: Int32(4),
                protocol_name: String_("s".to_owned()),
                leader: String_("m1".to_owned()),
                member_id: String_("m1".to_owned()),
                members: vec![JoinGroupResponseMember {
                    member_id: String_("m1".to_owned()),
                    group_instance_id: NullableString(None),
                    metadata: Bytes(vec![9]),
                }],
            }
        );
    }

    #[test]
    fn member_id_required_is_an_error_with_the_member_id() {
        let mut bytes = vec![0, 0, 0, 0, 0, 79]; // MEMBER_ID_REQUIRED
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]); // generation -1, protocol "", leader ""
        bytes.extend([0, 1, b'x', 0, 0, 0, 0]); // member "x", no members
        let response =
            JoinGroupResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(5)))
                .unwrap();
        assert_eq!(response.error, Some(Error::MemberIdRequired));
        assert_eq!(response.member_id, String_("x".to_owned()));
    }
}
