//! A connection whose answers h2 gathers into one write. h2 copies a DATA frame into its write
//! buffer only below a threshold, 256 bytes on a connection that takes vectored writes and
//! 1,024 on one that does not; a larger frame waits in a chain of its own and is written
//! before any frame after it is encoded. Many of our answers (a lead, an explanation, a claim)
//! are a few hundred bytes, so on a plain socket each cost a `writev` of its own even when
//! dozens were ready together. Told the socket takes no vectored writes, h2 copies them into
//! one buffer and writes it once. A frame over 1 KiB (a large batch's) still waits apart, and
//! is now written in two writes where one vectored write took it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use leadscore_proto::tonic::transport::server::Connected;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

#[derive(Debug)]
pub struct Gathered<T>(pub T);

/// Plain TCP connections as the server accepts them: gathered, and with Nagle's algorithm off
/// (gRPC writes small frames, and waiting to coalesce them meets the peer's delayed ACK and
/// stalls a stream for some 40 ms).
pub fn accepted(listener: TcpListener) -> impl Stream<Item = io::Result<Gathered<TcpStream>>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(Gathered(stream))
    })
}

impl<T: Connected> Connected for Gathered<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gathered<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Every write method but the vectored ones, which stay at their defaults (none).
impl<T: AsyncWrite + Unpin> AsyncWrite for Gathered<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole point: h2 asks `is_write_vectored` once, when the connection starts, and
    /// copies frames under 1,024 bytes into its buffer only when the answer is no.
    #[tokio::test]
    async fn a_gathered_socket_says_it_takes_no_vectored_writes_and_carries_bytes_both_ways() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert!(server.is_write_vectored(), "the plain socket takes vectored writes");
        let mut server = Gathered(server);
        assert!(!server.is_write_vectored());
        let mut client = Gathered(client);
        server.write_all(b"an answer").await.unwrap();
        server.flush().await.unwrap();
        let mut read = [0; 9];
        client.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"an answer");
        assert_eq!(server.connect_info().remote_addr(), client.0.local_addr().ok());
    }
}
