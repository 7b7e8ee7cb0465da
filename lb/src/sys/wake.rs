//! An eventfd that wakes a data-path thread out of `poll` when the control plane has news.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A wake-up flag another thread can raise; the owner polls its fd with its socket's.
#[derive(Debug)]
pub struct Waker(OwnedFd);

impl Waker {
    /// A fresh, lowered flag.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall; the fd is owned by the returned OwnedFd.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor.
        Ok(Waker(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Raises the flag (from any thread).
    pub fn wake(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64; a full counter (EAGAIN) is still raised.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Lowers the flag.
    pub fn clear(&self) {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (not raised) is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Waits until `fd` is readable, `waker` is raised, or `timeout` passes; returns
/// `(fd readable, woken)`.
pub fn wait_or_wake(fd: RawFd, waker: &Waker, timeout: Duration) -> io::Result<(bool, bool)> {
    let mut p = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: waker.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: two valid pollfds.
    match unsafe { libc::poll(p.as_mut_ptr(), 2, ms) } {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok((false, false))
            } else {
                Err(e)
            }
        }
        0 => Ok((false, false)),
        _ => Ok((p[0].revents != 0, p[1].revents != 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_then_clear() {
        let w = Waker::new().unwrap();
        let (r, _wr) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = r.as_raw_fd();
        assert_eq!(
            wait_or_wake(fd, &w, Duration::ZERO).unwrap(),
            (false, false)
        );
        w.wake();
        w.wake();
        assert_eq!(wait_or_wake(fd, &w, Duration::ZERO).unwrap(), (false, true));
        w.clear();
        assert_eq!(
            wait_or_wake(fd, &w, Duration::ZERO).unwrap(),
            (false, false)
        );
    }
}
