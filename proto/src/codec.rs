//! The codec of every generated client and server: prost's, except that a message is decoded
//! from the contiguous bytes tonic has gathered for it rather than through the buffer's `Buf`
//! methods, which advance a `BytesMut` byte by byte (a fifth of a `Score` request's decode).

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

#[derive(Debug, Clone)]
pub struct SliceCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct SliceDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let (chunk, len) = (buf.chunk(), buf.remaining());
        // tonic gathers a message in one buffer; the general path stays for any other.
        let decoded = if chunk.len() == len {
            let decoded = U::decode(chunk);
            buf.advance(len);
            decoded
        } else {
            U::decode(&mut *buf)
        };
        // INTERNAL, as prost's codec answers a message that does not parse.
        decoded.map(Some).map_err(|error| Status::internal(error.to_string()))
    }
}
