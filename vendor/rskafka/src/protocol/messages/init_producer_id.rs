//! store-events patch 9: `InitProducerId`, versions 0 and 1 (not flexible; version 2 and
//! up are). Kafka 0.11 to 4.x serve them. An idempotent producer without a transactional
//! id asks any broker for a producer id and epoch.
//!
//! <https://kafka.apache.org/protocol#The_Messages_InitProducerId>

use std::io::{Read, Write};

use crate::protocol::{
    api_key::ApiKey,
    api_version::{ApiVersion, ApiVersionRange},
    error::Error,
    primitives::{Int16, Int32, Int64, NullableString},
    traits::{ReadType, WriteType},
};

use super::{
    ReadVersionedError, ReadVersionedType, RequestBody, WriteVersionedError, WriteVersionedType,
};

#[derive(Debug, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// The transactional id, `None` for an idempotent producer outside transactions.
    pub transactional_id: NullableString,

    /// The transaction timeout (unused without a transactional id).
    pub transaction_timeout_ms: Int32,
}

impl<W: Write> WriteVersionedType<W> for InitProducerIdRequest {
    fn write_versioned(
        &self,
        writer: &mut W,
        version: ApiVersion,
    ) -> Result<(), WriteVersionedError> {
        let v = version.0.0;
        assert!((0..=1).contains(&v));
        self.transactional_id.write(writer)?;
        self.transaction_timeout_ms.write(writer)?;
        Ok(())
    }
}

impl RequestBody for InitProducerIdRequest {
    type ResponseBody = InitProducerIdResponse;

    const API_KEY: ApiKey = ApiKey::InitProducerId;

    const API_VERSION_RANGE: ApiVersionRange =
        ApiVersionRange::new(ApiVersion(Int16(0)), ApiVersion(Int16(1)));

    const FIRST_TAGGED_FIELD_IN_REQUEST_VERSION: ApiVersion = ApiVersion(Int16(2));
}

#[derive(Debug, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    /// The duration in milliseconds for which the request was throttled.
    pub throttle_time_ms: Int32,

    /// The error, if any.
    pub error: Option<Error>,

    /// The producer id.
    pub producer_id: Int64,

    /// The producer epoch.
    pub producer_epoch: Int16,
}

impl<R: Read> ReadVersionedType<R> for InitProducerIdResponse {
    fn read_versioned(reader: &mut R, version: ApiVersion) -> Result<Self, ReadVersionedError> {
        let v = version.0.0;
        assert!((0..=1).contains(&v));
        Ok(Self {
            throttle_time_ms: Int32::read(reader)?,
            error: Error::new(Int16::read(reader)?.0),
            producer_id: Int64::read(reader)?,
            producer_epoch: Int16::read(reader)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_request_and_response_are_as_the_protocol_says() {
        let request = InitProducerIdRequest {
            transactional_id: NullableString(None),
            transaction_timeout_ms: Int32(60_000),
        };
        for version in [0, 1] {
            let mut bytes = Vec::new();
            request
                .write_versioned(&mut bytes, ApiVersion(Int16(version)))
                .unwrap();
            assert_eq!(bytes, [0xff, 0xff, 0, 0, 0xea, 0x60], "version {version}");
        }
        let bytes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x01, 0, 2];
        let response =
            InitProducerIdResponse::read_versioned(&mut Cursor::new(bytes), ApiVersion(Int16(1)))
                .unwrap();
        assert_eq!(
            response,
            InitProducerIdResponse {
                throttle_time_ms: Int32(0),
                error: None,
                producer_id: Int64(0x1001),
                producer_epoch: Int16(2),
            }
        );
    }
}
