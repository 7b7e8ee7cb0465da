//! Throughput of a batch-verdict loop against no queue at all, in a `minimal` lab (root).
//!
//! h1 sends N UDP datagrams to h2:9999 as fast as one socket can; h2 counts what arrives.
//! Run 1: no rule. Run 2: h1's OUTPUT sends them to queue 0, where a thread receives batches
//! and accepts each with one `verdict_batch`. Prints delivered packets per second for both,
//! their ratio, and the queue's drop counters.
//!
//! `cargo run --release -p nfqueue --example rate -- [COUNT] [BATCH]`

use lab::topology::builtin;
use lab::{Lab, LabOptions, resolve};
use nfqueue::{Queue, QueueConfig, QueueStats, RecvBatch, Verdict};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("rate: {e}");
        std::process::exit(2);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn run() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let lab = Lab::up(resolve(&builtin("minimal")?)?, &LabOptions::default())?;
    let r = lab::check::check_connectivity(&lab, Duration::from_secs(5))?;
    if !r.missing.is_empty() {
        return Err(format!("lab not connected: {:?}", r.missing).into());
    }
    let plain = measure(&lab, count, None)?;
    let status = lab
        .command("h1", "iptables")?
        .args(["-A", "OUTPUT", "-p", "udp", "--dport", "9999"])
        .args(["-j", "NFQUEUE", "--queue-num", "0"])
        .status()?;
    if !status.success() {
        return Err("iptables failed".into());
    }
    let queued = measure(&lab, count, Some(batch))?;
    println!(
        "count {count} batch {batch}: plain {:.0} pps ({} delivered), queue {:.0} pps ({} delivered), ratio {:.2}",
        plain.0,
        plain.1,
        queued.0,
        queued.1,
        queued.0 / plain.0
    );
    Ok(())
}

fn set_rcvbuf(s: &UdpSocket, bytes: i32) {
    // SAFETY: setsockopt with a pointer to a live c_int.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            4,
        )
    };
}

/// Sends `count` datagrams h1 → h2 and returns (delivered per second, delivered).
fn measure(lab: &Lab, count: usize, batch: Option<usize>) -> Res<(f64, usize)> {
    let rx = lab.run_in("h2", || UdpSocket::bind("10.0.0.2:9999"))??;
    set_rcvbuf(&rx, 64 << 20);
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    let tx = lab.run_in("h1", || {
        let s = UdpSocket::bind("10.0.0.1:0")?;
        s.connect("10.0.0.2:9999")?;
        Ok::<_, std::io::Error>(s)
    })??;
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let worker = batch.map(|n| {
        let q = lab.run_in("h1", || Queue::bind(0, &QueueConfig::default()));
        let stop = stop.clone();
        let ready_tx = ready_tx.clone();
        std::thread::spawn(move || -> Result<u64, String> {
            let mut q = q.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            q.set_nonblocking(true).map_err(|e| e.to_string())?;
            let _ = ready_tx.send(());
            let mut b = RecvBatch::new(n);
            let mut batches = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if q.recv(&mut b).map_err(|e| e.to_string())? == 0 {
                    let mut pfd = libc::pollfd {
                        fd: q.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 50) };
                    continue;
                }
                batches += 1;
                if let Some(id) = b.last_id() {
                    q.verdict_batch(id, Verdict::Accept)
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(batches)
        })
    });
    // Only the worker holds a sender now: a failed bind ends the wait with an error.
    drop(ready_tx);
    if let Some(w) = worker {
        if ready_rx.recv().is_err() {
            return Err(w
                .join()
                .map_err(|_| "queue thread panicked")?
                .unwrap_err()
                .into());
        }
        return finish(lab, count, rx, tx, stop, Some(w));
    }
    finish(lab, count, rx, tx, stop, None)
}

fn finish(
    lab: &Lab,
    count: usize,
    rx: UdpSocket,
    tx: UdpSocket,
    stop: Arc<AtomicBool>,
    worker: Option<std::thread::JoinHandle<Result<u64, String>>>,
) -> Res<(f64, usize)> {
    let sender = std::thread::spawn(move || {
        let payload = [0x55u8; 64];
        for _ in 0..count {
            let _ = tx.send(&payload);
        }
    });
    let mut buf = [0u8; 2048];
    let mut got = 0usize;
    let mut first = None;
    let mut last = Instant::now();
    while let Ok(_n) = rx.recv(&mut buf) {
        last = Instant::now();
        first.get_or_insert(last);
        got += 1;
        if got == count {
            break;
        }
    }
    sender.join().map_err(|_| "sender panicked")?;
    let stats = lab.run_in("h1", || QueueStats::read(0))??;
    stop.store(true, Ordering::Relaxed);
    if let Some(w) = worker {
        let batches = w.join().map_err(|_| "queue thread panicked")??;
        if let Some(s) = stats {
            println!(
                "  queue: {batches} batches, avg {:.1} packets per batch, queue_dropped {}, user_dropped {}",
                got as f64 / batches.max(1) as f64,
                s.queue_dropped,
                s.user_dropped
            );
        }
    }
    let secs = first.map_or(0.0, |f| (last - f).as_secs_f64());
    Ok((if secs > 0.0 { got as f64 / secs } else { 0.0 }, got))
}
