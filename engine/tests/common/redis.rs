//! Real `redis-server` processes for the shared rate-limit tests: a
//! standalone server or a three-node cluster on free loopback ports,
//! killed when dropped. Installed by `scripts/setup-test-deps.sh`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    password: Option<String>,
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(name: &str) -> &str {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "`{name}` not found: run scripts/setup-test-deps.sh");
    name
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), extra)
    }

    /// A server on `port` (one a test held before, say).
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_owned());
        let child = Command::new(binary("redis-server"))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let s = RedisServer {
            child,
            port,
            dir,
            password,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while s
            .cmd(&["PING"])
            .map(|r| !r.contains("PONG"))
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Sends one command (inline protocol) and returns the raw reply.
    pub fn cmd(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut out = Vec::new();
        let mut push = |args: &[&str]| {
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
        };
        let mut n = 1;
        if let Some(pw) = &self.password {
            push(&["AUTH", pw]);
            n += 1;
        }
        push(args);
        s.write_all(&out)?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Good enough for the small replies tests read.
        while got.windows(2).filter(|w| w == b"\r\n").count() < n {
            let k = s.read(&mut buf)?;
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
            if args[0].eq_ignore_ascii_case("CLUSTER") || args[0].eq_ignore_ascii_case("KEYS") {
                // A bulk reply: read whatever else arrives promptly.
                s.set_read_timeout(Some(Duration::from_millis(100)))?;
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..k]);
                }
                break;
            }
        }
        Ok(String::from_utf8_lossy(&got).into_owned())
    }

    /// One command to a server on `port` without a password.
    pub fn cmd_on(port: u16, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(out.as_bytes()).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server --sentinel` watching one master (quorum 1, fast
/// failure detection), killed when dropped.
pub struct RedisSentinel {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    pub fn start(master: &str, master_port: u16) -> RedisSentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {master} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {master} 1000\n\
                 sentinel failover-timeout {master} 5000\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(binary("redis-server"))
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis sentinel");
        let s = RedisSentinel {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.master_addr(master).contains(&master_port.to_string()) {
            assert!(Instant::now() < deadline, "sentinel did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// The sentinel's raw answer for the master's address.
    pub fn master_addr(&self, master: &str) -> String {
        if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return String::new();
        }
        RedisServer::cmd_on(self.port, &["SENTINEL", "get-master-addr-by-name", master])
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three masters covering all slots.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let out = Command::new(binary("redis-cli"))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            while !n
                .cmd(&["CLUSTER", "INFO"])
                .unwrap_or_default()
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "cluster did not become ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        RedisCluster { nodes }
    }
}
