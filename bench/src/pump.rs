//! The loopback baseline: a plain TCP byte pump with no protocol at all.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Size of each write and read: large enough that syscall overhead does not dominate, like the
/// S2S client's socket writes of whole content chunks.
const CHUNK: usize = 1 << 20;

/// Pushes `total` bytes through one loopback TCP connection and returns the elapsed time from
/// connect until the receiver has counted the last byte.
pub async fn pump(total: u64) -> std::io::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok::<u64, std::io::Error>(got);
            }
            got += n as u64;
        }
    });
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    let data: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    s.shutdown().await?;
    drop(s);
    let got = reader.await.map_err(std::io::Error::other)??;
    let elapsed = start.elapsed();
    if got != total {
        return Err(std::io::Error::other(format!(
            "pump: sent {total} bytes, received {got}"
        )));
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn pumps_exactly_the_requested_bytes() {
        // Not a speed check: the byte count must match, including a partial last chunk.
        super::pump(3 * (1 << 20) + 17).await.unwrap();
        super::pump(0).await.unwrap();
    }
}
