//! What the data-plane end-to-end tests (`e2e.rs`, `dsr_kernel.rs`) share: the VIP, an echo
//! server on it in a backend, a TCP and a UDP client, a shell in a host.

use lab::{Lab, Process};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 50);
pub const PORT: u16 = 8080;

pub fn fixture(name: &str) -> String {
    format!(
        "{}/../fixtures/topologies/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Stops `p` with SIGTERM, waits for it, and returns its log.
pub fn stop(lab: &mut Lab, p: &Process) -> String {
    lab.stop(p).expect("stop");
    std::fs::read_to_string(&p.log).unwrap_or_default()
}

/// A TCP and a UDP server on VIP:8080 inside `host`, answering `<host>: <line>`.
pub struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Echo {
    pub fn start(lab: &Lab, host: &str) -> Echo {
        Echo::start_on(lab, host, VIP)
    }

    /// The same on another address of `host` (a second VIP).
    pub fn start_on(lab: &Lab, host: &str, vip: Ipv4Addr) -> Echo {
        let (tcp, udp) = lab
            .run_in(host, || {
                (
                    TcpListener::bind((vip, PORT)).expect("bind TCP VIP:8080"),
                    UdpSocket::bind((vip, PORT)).expect("bind UDP VIP:8080"),
                )
            })
            .expect("run in host");
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let name = host.to_string();
        let s = Arc::clone(&stop);
        let t1 = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((conn, _)) => {
                        let name = name.clone();
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            let mut r = BufReader::new(conn.try_clone().unwrap());
                            let mut line = String::new();
                            while r.read_line(&mut line).unwrap_or(0) > 0 {
                                let _ = (&conn).write_all(format!("{name}: {line}").as_bytes());
                                line.clear();
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        let name = host.to_string();
        let s = Arc::clone(&stop);
        let t2 = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let mut reply = format!("{name}: ").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = udp.send_to(&reply, from);
                }
            }
        });
        Echo {
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// From `host`: connect to VIP:8080, send a line, return the answer line.
pub fn tcp_ask(lab: &Lab, host: &str, line: &str) -> std::io::Result<String> {
    let conn = lab
        .run_in(host, || {
            TcpStream::connect_timeout(&SocketAddr::from((VIP, PORT)), Duration::from_secs(3))
        })
        .expect("run in host")?;
    conn.set_read_timeout(Some(Duration::from_secs(3)))?;
    (&conn).write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&conn).read_line(&mut answer)?;
    Ok(answer.trim_end().to_string())
}

/// A long-lived TCP connection from a host to VIP:8080.
pub struct Client {
    conn: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(lab: &Lab, host: &str) -> std::io::Result<Client> {
        let conn = lab
            .run_in(host, || {
                TcpStream::connect_timeout(&SocketAddr::from((VIP, PORT)), Duration::from_secs(3))
            })
            .expect("run in host")?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Client {
            r: BufReader::new(conn.try_clone()?),
            conn,
        })
    }

    /// Sends a line; returns the backend that answered.
    pub fn ask(&mut self, line: &str) -> std::io::Result<String> {
        (&self.conn).write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        self.r.read_line(&mut answer)?;
        match answer.split_once(": ") {
            Some((who, said)) if said.trim_end() == line => Ok(who.to_string()),
            _ => Err(std::io::Error::other(format!("odd answer {answer:?}"))),
        }
    }
}

/// From `host`: one datagram to VIP:8080, the answer (from the VIP: direct server return).
pub fn udp_ask(lab: &Lab, host: &str, msg: &str) -> std::io::Result<String> {
    udp_ask_to(lab, host, VIP, msg)
}

/// The same to another VIP.
pub fn udp_ask_to(lab: &Lab, host: &str, vip: Ipv4Addr, msg: &str) -> std::io::Result<String> {
    let sock = lab
        .run_in(host, || UdpSocket::bind("0.0.0.0:0"))
        .expect("run in host")?;
    sock.connect((vip, PORT))?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    sock.send(msg.as_bytes())?;
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

pub fn sh(lab: &Lab, host: &str, cmd: &str) -> String {
    let out = lab
        .command(host, "sh")
        .unwrap()
        .args(["-c", cmd])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kills `p` with SIGKILL (a crash: nothing is cleaned up), waits until it is gone, and reaps it.
pub fn crash(lab: &mut Lab, p: &Process) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.id.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    while p.id.alive() {
        std::thread::sleep(Duration::from_millis(5));
    }
    lab.stop(p).expect("reap");
}

/// The NFQUEUE queues bound in `host`, as `/proc/net/netfilter/nfnetlink_queue` lists them.
pub fn queues(lab: &Lab, host: &str) -> Vec<nfqueue::QueueStats> {
    lab.run_in(host, nfqueue::QueueStats::read_all)
        .expect("run in host")
        .expect("read nfnetlink_queue")
}
