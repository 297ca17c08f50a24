//! store-events patch 7: `FindCoordinator`, versions 1 and 2 (not flexible; version 0 is
//! gone from Kafka 4, versions 3 and up are flexible).
//!
//! <https://kafka.apache.org/protocol#The_Messages_FindCoordinator>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{Int8, Int16, Int32, NullableString, String_},
    traits::{ReadType, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

/// `key_type` of a consumer group.
pub const COORDINATOR_KEY_TYPE_GROUP: i8 = 0;

#[derive(Debug, PartialEq, Eq)]
pub struct FindCoordinatorRequest {
    /// The coordinator key: the group id.
    pub key: String_,

    /// The coordinator key type: 0 for a group, 1 for a transaction.
    pub key_type: Int8,
}

impl<W> WriteVersionedType<W> for FindCoordinatorRequest
where
    W: Write,
{
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!((1..=2).contains(&v));

        self.key.write(writer)?;
        self.key_type.write(writer)?;
        Ok(())
    }
}

impl RequestBody for FindCoordinatorRequest {
    type ResponseBody = FindCoordinatorResponse;

    const API_KEY: ApiKey = ApiKey::FindCoordinator;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(1)), ApiVersion(Int16(2)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(3));
}

#[derive(Debug, PartialEq, Eq)]
pub struct FindCoordinatorResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// The error, if any.
    pub error: Option<Error>,

    /// The error message, if any.
    pub error_message: NullableString,

    /// The node id of the coordinator.
    pub node_id: Int32,

    /// Its host name.
    pub host: String_,

    /// Its port.
    pub port: Int32,
}

impl<R> ReadVersionedType<R> for FindCoordinatorResponse
where
    R: Read,
{
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!((1..=2).contains(&v));

        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
            error_message: NullableString::read(reader)?,
            node_id: Int32::read(reader)?,
            host: String_::read(reader)?,
            port: Int32::read(reader)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_is_written_as_the_protocol_says() {
        let request = FindCoordinatorRequest {
            key: String_("g1".to_owned()),
            key_type: Int8(COORDINATOR_KEY_TYPE_GROUP),
        };
        for version in [1, 2] {
            let mut bytes = Vec::new();
            request
                .write_versioned(&mut bytes, ApiVersion(Int16(version)))
                .unwrap();
            // key: INT16 length, bytes; key_type: INT8
            assert_eq!(bytes, [0, 2, b'g', b'1', 0], "version {version}");
        }
    }

    #[test]
    fn the_response_is_read_as_the_protocol_says() {
        let bytes = [
            0, 0, 0, 0, // throttle_time_ms
            0, 15, // error_code: COORDINATOR_NOT_AVAILABLE
            0, 3, b'n', b'o', b'!', // error_message
            0, 0, 0, 2, // node_id
            0, 1, b'h', // host
            0, 0, 0x23, 0x84, // port 9092
        ];
        let response =
            FindCoordinatorResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(2)))
                .unwrap();
        assert_eq!(
            response,
            FindCoordinatorResponse {
                throttle_time_ms: Int32(0),
                error: Some(Error::CoordinatorNotAvailable),
                error_message: NullableString(Some("no!".to_owned())),
                node_id: Int32(2),
                host: String_("h".to_owned()),
                port: Int32(9092),
            }
        );
    }
}
