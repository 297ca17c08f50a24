//! store-events patch 8: `SyncGroup`, version 3 (the first with `group_instance_id`; not
//! flexible). Kafka 2.3 to 4.x serve it.
//!
//! <https://kafka.apache.org/protocol#The_Messages_SyncGroup>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{ArrayRef, Bytes, Int16, Int32, NullableString, String_},
    traits::{ReadType, WriteError, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

/// The only version spoken.
const VERSION: i16 = 3;

#[derive(Debug, PartialEq, Eq)]
pub struct SyncGroupRequestAssignment {
    /// The member the assignment is for.
    pub member_id: String_,

    /// Its assignment (for a consumer, a `ConsumerProtocolAssignment`).
    pub assignment: Bytes,
}

impl<W: Write> WriteType<W> for SyncGroupRequestAssignment {
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        self.member_id.write(writer)?;
        self.assignment.write(writer)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct SyncGroupRequest {
    /// The group id.
    pub group_id: String_,

    /// The generation the member joined.
    pub generation_id: Int32,

    /// The member id.
    pub member_id: String_,

    /// The static member's instance id.
    pub group_instance_id: NullableString,

    /// Every member's assignment from the leader; empty from the other members.
    pub assignments: Vec<SyncGroupRequestAssignment>,
}

impl<W: Write> WriteVersionedType<W> for SyncGroupRequest {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        assert_eq!(version.0.0, VERSION);
        self.group_id.write(writer)?;
        self.generation_id.write(writer)?;
        self.member_id.write(writer)?;
        self.group_instance_id.write(writer)?;
        ArrayRef(Some(&self.assignments)).write(writer)?;
        Ok(())
    }
}

impl RequestBody for SyncGroupRequest {
    type ResponseBody = SyncGroupResponse;

    const API_KEY: ApiKey = ApiKey::SyncGroup;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(VERSION)), ApiVersion(Int16(VERSION)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(4));
}

#[derive(Debug, PartialEq, Eq)]
pub struct SyncGroupResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// The error, if any.
    pub error: Option<Error>,

    /// This member's assignment.
    pub assignment: Bytes,
}

impl<R: Read> ReadVersionedType<R> for SyncGroupResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        assert_eq!(version.0.0, VERSION);
        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
            assignment: Bytes::read(reader)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_is_written_as_the_protocol_says() {
        let request = SyncGroupRequest {
            group_id: String_("g".to_owned()),
            generation_id: Int32(3),
            member_id: String_("m".to_owned()),
            group_instance_id: NullableString(None),
            assignments: vec![SyncGroupRequestAssignment {
                member_id: String_("m".to_owned()),
                assignment: Bytes(vec![1]),
            }],
        };
        let mut bytes = Vec::new();
        request
            .write_versioned(&mut bytes, ApiVersion(Int16(3)))
            .unwrap();
        let expected = [
            0, 1, b'g', // group_id
            0, 0, 0, 3, // generation_id
            0, 1, b'm', // member_id
            0xff, 0xff, // group_instance_id: null
            0, 0, 0, 1, 0, 1, b'm', 0, 0, 0, 1, 1, // [member_id, assignment]
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn the_response_is_read_as_the_protocol_says() {
        let bytes = [0, 0, 0, 0, 0, 27, 0, 0, 0, 2, 5, 6]; // REBALANCE_IN_PROGRESS
        let response =
            SyncGroupResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(3)))
                .unwrap();
        assert_eq!(
            response,
            SyncGroupResponse {
                throttle_time_ms: Int32(0),
                error: Some(Error::RebalanceInProgress),
                assignment: Bytes(vec![5, 6]),
            }
        );
    }
}
