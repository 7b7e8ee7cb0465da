//! [`CaptureError`]: what can go wrong opening or running a capture.

/// Errors of opening or running a capture.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The interface does not exist in the calling thread's namespace.
    #[error("interface {name:?} not found in this network namespace")]
    NoSuchInterface {
        /// Interface name asked for.
        name: String,
    },
    /// A socket call failed.
    #[error("packet socket on {interface}: {op}: {source}")]
    Socket {
        /// The failing call.
        op: &'static str,
        /// Interface name, or `any`.
        interface: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `wait` was called on a capture with neither a count nor a duration limit.
    #[error("capture on {host} has no count or duration limit; call stop() instead of wait()")]
    Unbounded {
        /// Capture point host.
        host: String,
    },
    /// The reader thread panicked.
    #[error("capture thread for {host} panicked")]
    ThreadPanicked {
        /// Capture point host.
        host: String,
    },
}
