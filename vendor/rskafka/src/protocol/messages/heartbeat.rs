//! store-events patch 8: `Heartbeat`, version 3 (the first with `group_instance_id`; not
//! flexible). Kafka 2.3 to 4.x serve it.
//!
//! <https://kafka.apache.org/protocol#The_Messages_Heartbeat>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{Int16, Int32, NullableString, String_},
    traits::{ReadType, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

/// The only version spoken.
const VERSION: i16 = 3;

#[derive(Debug, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// The group id.
    pub group_id: String_,

    /// The generation the member has.
    pub generation_id: Int32,

    /// The member id.
    pub member_id: String_,

    /// The static member's instance id.
    pub group_instance_id: NullableString,
}

impl<W: Write> WriteVersionedType<W> for HeartbeatRequest {
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
        Ok(())
    }
}

impl RequestBody for HeartbeatRequest {
    type ResponseBody = HeartbeatResponse;

    const API_KEY: ApiKey = ApiKey::Heartbeat;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(VERSION)), ApiVersion(Int16(VERSION)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(4));
}

#[derive(Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// The error, if any: `REBALANCE_IN_PROGRESS` tells the member to rejoin.
    pub error: Option<Error>,
}

impl<R: Read> ReadVersionedType<R> for HeartbeatResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        assert_eq!(version.0.0, VERSION);
        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_and_response_are_as_the_protocol_says() {
        let request = HeartbeatRequest {
            group_id: String_("g".to_owned()),
            generation_id: Int32(-1),
            member_id: String_("m".to_owned()),
            group_instance_id: NullableString(Some("i".to_owned())),
        };
        let mut bytes = Vec::new();
        request
            .write_versioned(&mut bytes, ApiVersion(Int16(3)))
            .unwrap();
        let expected = [0, 1, b'g', 0xff, 0xff, 0xff, 0xff, 0, 1, b'm', 0, 1, b'i'];
        assert_eq!(bytes, expected);

        let bytes = [0, 0, 0, 9, 0, 27];
        let response =
            HeartbeatResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(3)))
                .unwrap();
        assert_eq!(
            response,
            HeartbeatResponse {
                throttle_time_ms: Int32(9),
                error: Some(Error::RebalanceInProgress),
            }
        );
    }
}
