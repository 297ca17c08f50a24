//! store-events patch 8: `LeaveGroup`, version 3 (the first that names members, static
//! ones by instance id; not flexible). Kafka 2.4 to 4.x serve it.
//!
//! <https://kafka.apache.org/protocol#The_Messages_LeaveGroup>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{Array, ArrayRef, Int16, Int32, NullableString, String_},
    traits::{ReadError, ReadType, WriteError, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

/// The only version spoken.
const VERSION: i16 = 3;

#[derive(Debug, PartialEq, Eq)]
pub struct LeaveGroupMember {
    /// The member id.
    pub member_id: String_,

    /// The static member's instance id.
    pub group_instance_id: NullableString,
}

impl<W: Write> WriteType<W> for LeaveGroupMember {
    fn write(&self, writer: &mut W) -> Result<(), WriteError> {
        self.member_id.write(writer)?;
        self.group_instance_id.write(writer)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    /// The group id.
    pub group_id: String_,

    /// The members leaving.
    pub members: Vec<LeaveGroupMember>,
}

impl<W: Write> WriteVersionedType<W> for LeaveGroupRequest {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        assert_eq!(version.0.0, VERSION);
        self.group_id.write(writer)?;
        ArrayRef(Some(&self.members)).write(writer)?;
        Ok(())
    }
}

impl RequestBody for LeaveGroupRequest {
    type ResponseBody = LeaveGroupResponse;

    const API_KEY: ApiKey = ApiKey::LeaveGroup;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(VERSION)), ApiVersion(Int16(VERSION)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(4));
}

#[derive(Debug, PartialEq, Eq)]
pub struct LeaveGroupResponseMember {
    /// The member id.
    pub member_id: String_,

    /// The static member's instance id.
    pub group_instance_id: NullableString,

    /// The error of this member's leave, if any.
    pub error: Option<Error>,
}

impl<R: Read> ReadType<R> for LeaveGroupResponseMember {
    fn read(reader: &mut R) -> Result<Self, ReadError> {
        Ok(Self {
            member_id: String_::read(reader)?,
            group_instance_id: NullableString::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// The error, if any.
    pub error: Option<Error>,

    /// Each member's outcome.
    pub members: Vec<LeaveGroupResponseMember>,
}

impl<R: Read> ReadVersionedType<R> for LeaveGroupResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        assert_eq!(version.0.0, VERSION);
        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
            members: Array::read(reader)?.0.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_and_response_are_as_the_protocol_says() {
        let request = LeaveGroupRequest {
            group_id: String_("g".to_owned()),
            members: vec![LeaveGroupMember {
                member_id: String_("m".to_owned()),
                group_instance_id: NullableString(None),
            }],
        };
        let mut bytes = Vec::new();
        request
            .write_versioned(&mut bytes, ApiVersion(Int16(3)))
            .unwrap();
        assert_eq!(bytes, [0, 1, b'g', 0, 0, 0, 1, 0, 1, b'm', 0xff, 0xff]);

        let bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, b'm', 0xff, 0xff, 0, 25];
        let response =
            LeaveGroupResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(3)))
                .unwrap();
        assert_eq!(
            response,
            LeaveGroupResponse {
                throttle_time_ms: Int32(0),
                error: None,
                members: vec![LeaveGroupResponseMember {
                    member_id: String_("m".to_owned()),
                    group_instance_id: NullableString(None),
                    error: Some(Error::UnknownMemberId),
                }],
            }
        );
    }
}
