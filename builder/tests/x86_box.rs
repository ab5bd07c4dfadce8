//! The x86 box board in QEMU. boards/x86_64-uefi-test.toml has the kernel
//! fragments of boards/x86_64-uefi.toml and the committed test keys. It
//! boots with Secure Boot enforced on a q35 machine from an NVMe disk with
//! two e1000e cards, and its nftables ruleset decides what it routes
//! between them.
//!
//! Each card is wired to a pair of UDP sockets on 127.0.0.1 (`applbuild run
//! --nic-udp`). The test is the other end of both links. It replies to ARP
//! requests for one host on each network, sends hand-made Ethernet frames
//! into the inside card and records the frames that leave through the
//! outside card.
//! manifests/router-test.toml allows UDP port 5000 from eth0 to eth1 only.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{applbuild, repo, run};

type Mac = [u8; 6];

/// The appliance's cards: QEMU gives card N the MAC 52:54:00:12:34:5N.
const ROUTER_ETH0: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x50];
const INSIDE_HOST: Host = Host { mac: [0x02, 0, 0, 0, 0, 0x0a], ip: Ipv4Addr::new(192, 168, 10, 2) };
const OUTSIDE_HOST: Host = Host { mac: [0x02, 0, 0, 0, 0, 0x0b], ip: Ipv4Addr::new(192, 168, 20, 2) };
const ALLOWED_PORT: u16 = 5000;
const BLOCKED_PORT: u16 = 6000;

#[derive(Clone, Copy)]
struct Host {
    mac: Mac,
    ip: Ipv4Addr,
}

/// A UDP datagram seen on one of the networks.
#[derive(Debug, Clone)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_port: u16,
    payload: Vec<u8>,
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Builds an Ethernet frame carrying an IPv4 UDP datagram, without a UDP
/// checksum (0 means none in IPv4).
fn udp_frame(src: Host, dst_mac: Mac, dst_ip: Ipv4Addr, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src.mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.ip.octets());
    ip.extend_from_slice(&dst_ip.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&dst_port.to_be_bytes());
    frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Builds the ARP reply of `host` when `request` is an ARP request for
/// the address of `host`.
fn arp_reply(host: Host, request: &[u8]) -> Option<Vec<u8>> {
    let arp = request.get(14..42)?;
    let is_request = request.get(12..14)? == [0x08, 0x06] && arp.get(6..8)? == [0, 1];
    if !is_request || arp.get(24..28)? != host.ip.octets() {
        return None;
    }
    let (asker_mac, asker_ip) = (arp.get(8..14)?, arp.get(14..18)?);
    let mut reply = Vec::new();
    reply.extend_from_slice(asker_mac);
    reply.extend_from_slice(&host.mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&host.mac);
    reply.extend_from_slice(&host.ip.octets());
    reply.extend_from_slice(asker_mac);
    reply.extend_from_slice(asker_ip);
    Some(reply)
}

fn parse_udp(frame: &[u8]) -> Option<Seen> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 17 {
        return None;
    }
    let octets = |range: std::ops::Range<usize>| -> Option<Ipv4Addr> {
        let b = ip.get(range)?;
        Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    };
    let udp = ip.get(header_len..)?;
    Some(Seen {
        src: octets(12..16)?,
        dst: octets(16..20)?,
        dst_port: u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]),
        payload: udp.get(8..)?.to_vec(),
    })
}

/// One network: the test's socket, the host it plays, the datagrams seen.
struct Network {
    socket: UdpSocket,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Network {
    /// Binds the test's end and starts replying to ARP requests for `host`. QEMU's end
    /// is `qemu_port`, where frames are sent.
    fn start(host: Host, qemu_port: u16) -> Network {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test's UDP socket");
        socket.connect(("127.0.0.1", qemu_port)).expect("connect to QEMU's port");
        socket.set_read_timeout(Some(Duration::from_millis(200))).expect("set a read timeout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (reader, log) = (socket.try_clone().expect("clone the socket"), Arc::clone(&seen));
        thread::spawn(move || {
            let mut buffer = [0u8; 2048];
            loop {
                // QEMU's port is not open before the guest starts: sends and
                // receives fail with ECONNREFUSED until then.
                let Ok(len) = reader.recv(&mut buffer) else { continue };
                let frame = &buffer[..len];
                if let Some(reply) = arp_reply(host, frame) {
                    let _ = reader.send(&reply);
                } else if let Some(datagram) = parse_udp(frame) {
                    log.lock().expect("log lock").push(datagram);
                }
            }
        });
        Network { socket, seen }
    }

    fn port(&self) -> u16 {
        self.socket.local_addr().expect("local address").port()
    }

    fn seen_payload(&self, payload: &[u8]) -> Option<Seen> {
        self.seen.lock().expect("log lock").iter().find(|s| s.payload == payload).cloned()
    }
}

/// Returns a free UDP port on 127.0.0.1 for QEMU's end of a link.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("pick a free port").port()
}

/// The appliance under QEMU: console lines arrive on a channel; dropping
/// it quits QEMU through its console escape (Ctrl-A X), then kills it.
struct Guest {
    child: Child,
    lines: mpsc::Receiver<String>,
    console: Vec<String>,
}

impl Guest {
    fn wait_for(&mut self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.console.push(line.clone());
                    if let Some(start) = line.find(prefix) {
                        return Some(line[start..].trim_end().to_owned());
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    fn console(&self) -> String {
        self.console.join("\n")
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"\x01x");
            let _ = stdin.flush();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `frame` into `network` every half second until `done` or `timeout`.
fn send_until(network: &Network, frame: &[u8], timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let _ = network.socket.send(frame);
        thread::sleep(Duration::from_millis(500));
        if done() {
            return true;
        }
    }
    false
}

#[test]
#[ignore = "builds boards/x86_64-uefi-test.toml and boots it in QEMU: needs root, its kernel (built on first use) and deb.debian.org"]
fn x86_box_boots_from_nvme_and_routes_only_allowed_traffic() {
    let repo = repo();
    let out = tempfile::tempdir().expect("create the output folder");
    let board = repo.join("boards/x86_64-uefi-test.toml");
    run(applbuild().arg("image").arg(&board).arg("--out").arg(out.path()).env("SOURCE_DATE_EPOCH", "1764806400"));

    let (qemu_inside, qemu_outside) = (free_port(), free_port());
    let inside = Network::start(INSIDE_HOST, qemu_inside);
    let outside = Network::start(OUTSIDE_HOST, qemu_outside);
    let mut child = applbuild()
        .arg("run")
        .arg(&board)
        .arg("--out")
        .arg(out.path())
        .arg("--secure-boot")
        .arg("--nic-udp")
        .arg(format!("{qemu_inside}:{}", inside.port()))
        .arg("--nic-udp")
        .arg(format!("{qemu_outside}:{}", outside.port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start applbuild run");
    let stdout = child.stdout.take().expect("QEMU's console");
    let (sender, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut guest = Guest { child, lines, console: Vec::new() };

    let ready = guest.wait_for("appliance ready:", Duration::from_secs(900));
    let ready = ready.unwrap_or_else(|| panic!("no ready line; console:\n{}", guest.console()));
    assert!(
        ready.contains("net=eth0:192.168.10.1/24,eth1:192.168.20.1/24 forward=1"),
        "static addresses or forwarding missing from the ready line: {ready}"
    );
    let console = guest.console();
    assert!(console.contains("secureboot: Secure boot enabled"), "the firmware did not enforce Secure Boot:\n{console}");
    assert!(console.contains("nvme0n1"), "the kernel did not find the NVMe disk:\n{console}");
    assert!(console.contains("e1000e"), "the kernel did not load the e1000e driver:\n{console}");
    assert!(console.contains("eth1"), "the kernel did not find a second card:\n{console}");
    assert!(console.contains("dm-verity") || console.contains("verity"), "no dm-verity root in the log:\n{console}");

    // Allowed: UDP 5000 from inside to outside. The router sends an ARP
    // request for the outside host first and may drop the first frames, so
    // the test resends.
    let allowed = udp_frame(INSIDE_HOST, ROUTER_ETH0, OUTSIDE_HOST.ip, ALLOWED_PORT, b"allowed-1");
    let through = send_until(&inside, &allowed, Duration::from_secs(60), || outside.seen_payload(b"allowed-1").is_some());
    assert!(through, "UDP port {ALLOWED_PORT} was not routed from eth0 to eth1; console:\n{}", guest.console());
    let seen = outside.seen_payload(b"allowed-1").expect("seen");
    assert_eq!((seen.src, seen.dst, seen.dst_port), (INSIDE_HOST.ip, OUTSIDE_HOST.ip, ALLOWED_PORT));

    // Blocked: another port, and the allowed port in the other direction.
    let blocked = udp_frame(INSIDE_HOST, ROUTER_ETH0, OUTSIDE_HOST.ip, BLOCKED_PORT, b"blocked-port");
    let router_eth1: Mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x51];
    let reverse = udp_frame(OUTSIDE_HOST, router_eth1, INSIDE_HOST.ip, ALLOWED_PORT, b"blocked-direction");
    for _ in 0..6 {
        inside.socket.send(&blocked).expect("send the blocked frame");
        outside.socket.send(&reverse).expect("send the reverse frame");
        thread::sleep(Duration::from_millis(500));
    }
    // A last allowed frame after the blocked ones shows the path still works,
    // so their absence is the firewall's doing.
    let again = udp_frame(INSIDE_HOST, ROUTER_ETH0, OUTSIDE_HOST.ip, ALLOWED_PORT, b"allowed-2");
    assert!(send_until(&inside, &again, Duration::from_secs(30), || outside.seen_payload(b"allowed-2").is_some()), "the allowed path stopped working");
    thread::sleep(Duration::from_secs(2));
    assert!(outside.seen_payload(b"blocked-port").is_none(), "UDP port {BLOCKED_PORT} was routed, but the manifest allows only {ALLOWED_PORT}");
    assert!(inside.seen_payload(b"blocked-direction").is_none(), "traffic from eth1 to eth0 was routed, but the manifest allows only eth0 to eth1");
}

/// Boots the same image from a SATA disk on q35's AHCI controller, the
/// other disk bus of such boxes, through a copy of the board with
/// `disk_bus = "ahci"`.
#[test]
#[ignore = "builds boards/x86_64-uefi-test.toml and boots it in QEMU: needs root and its kernel"]
fn x86_box_boots_from_ahci() {
    let repo = repo();
    let work = tempfile::tempdir().expect("create a temporary folder");
    let boards = repo.join("boards");
    let text = std::fs::read_to_string(boards.join("x86_64-uefi-test.toml")).expect("read the board");
    assert!(text.contains("disk_bus = \"nvme\""), "the test board no longer uses NVMe");
    let text = text
        .replace("disk_bus = \"nvme\"", "disk_bus = \"ahci\"")
        .replace("\"../", &format!("\"{}/../", boards.display()))
        .replace("\"kernel/", &format!("\"{}/kernel/", boards.display()));
    let board = work.path().join("board.toml");
    std::fs::write(&board, text).expect("write the board copy");
    let out = work.path().join("out");
    run(applbuild().arg("image").arg(&board).arg("--out").arg(&out).env("SOURCE_DATE_EPOCH", "1764806400"));

    let ready = run(applbuild().args(["run", "--test", "--secure-boot"]).arg(&board).arg("--out").arg(&out));

    assert!(ready.contains("appliance ready:"), "no ready line: {ready}");
    assert!(ready.contains("eth1:192.168.20.1/24"), "the second card is missing: {ready}");
}
