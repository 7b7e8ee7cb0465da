//! Bounded line I/O for the control connections: a reader that never holds more than its
//! limit (an over-long line is an error, not a bigger buffer) and a writer with a deadline.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why no line came.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The peer closed (a partial line without `\n` is dropped).
    #[error("connection closed")]
    Eof,
    /// No `\n` within the limit.
    #[error("line too long (max {0} bytes)")]
    TooLong(usize),
    /// Not UTF-8.
    #[error("line is not text")]
    NotText,
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads `\n`-terminated lines of at most `max` bytes.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of lines up to `max` bytes, `\n` included.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(max),
            max,
        }
    }

    /// The next line without its `\r\n`/`\n`. Cancel-safe: bytes read stay buffered.
    pub async fn next(&mut self) -> Result<String, LineError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8(line).map_err(|_| LineError::NotText)?;
                return Ok(text.trim_end_matches(['\n', '\r']).to_string());
            }
            if self.buf.len() >= self.max {
                return Err(LineError::TooLong(self.max));
            }
            let mut chunk = [0u8; 512];
            let room = (self.max - self.buf.len()).min(chunk.len());
            let n = self.inner.read(&mut chunk[..room]).await?;
            if n == 0 {
                return Err(LineError::Eof);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Writes `line` and `\n`, failing if that takes longer than `timeout` (a peer that does not
/// read must not hold the writer).
pub async fn write_line<W: AsyncWrite + Unpin>(
    w: &mut W,
    line: &str,
    timeout: Duration,
) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    match tokio::time::timeout(timeout, w.write_all(&bytes)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("write took longer than {timeout:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn lines_limits_and_eof() {
        rt().block_on(async {
            let data: &[u8] = b"REGISTER h2 10.0.0.2\r\nHEALTH 200\npartial";
            let mut r = LineReader::new(data, 64);
            assert_eq!(r.next().await.unwrap(), "REGISTER h2 10.0.0.2");
            assert_eq!(r.next().await.unwrap(), "HEALTH 200");
            assert!(matches!(r.next().await, Err(LineError::Eof)));

            let long = [b'A'; 100];
            let mut r = LineReader::new(&long[..], 64);
            assert!(matches!(r.next().await, Err(LineError::TooLong(64))));
            assert!(r.buf.len() <= 64);

            let bad: &[u8] = b"\xff\xfe\n";
            let mut r = LineReader::new(bad, 64);
            assert!(matches!(r.next().await, Err(LineError::NotText)));
        });
    }
}
