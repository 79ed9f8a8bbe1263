//! The Prometheus side of the metrics tests: a strict reader of the text
//! format (0.0.4) that fails on what a Prometheus server would refuse,
//! and a real Prometheus server (Debian's `prometheus`, installed by
//! `scripts/setup-test-deps.sh`) scraping the gateway, asked over its
//! HTTP API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Conn;

/// A sample's labels, in the order written.
pub type Labels = Vec<(String, String)>;

/// One scrape, read strictly: samples by their line's series text, and
/// the families declared (`# TYPE`).
#[derive(Debug, Default)]
pub struct Scrape {
    /// `(name, labels in order, value)`.
    pub samples: Vec<(String, Labels, f64)>,
    pub families: BTreeMap<String, String>,
}

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `{a="x",b="y\"z"}` (the text after the name); returns the
/// labels and the rest of the line.
fn labels(s: &str) -> (Labels, &str) {
    let Some(mut rest) = s.strip_prefix('{') else {
        return (Vec::new(), s);
    };
    let mut out = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (out, r);
        }
        let eq = rest.find('=').expect("label without =");
        let name = &rest[..eq];
        assert!(valid_name(name), "bad label name {name:?}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .expect("label value quoted");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("dangling escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => panic!("bad escape \\{c}"),
                },
                (_, '\n') => panic!("raw newline in a label value"),
                (_, c) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

impl Scrape {
    /// Reads `text`, panicking on anything malformed: bad names, label
    /// syntax or values, samples of an undeclared family, a series twice.
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        let mut seen = BTreeSet::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').expect("TYPE name kind");
                assert!(valid_name(name), "bad family name {name:?}");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type {kind}"
                );
                assert!(
                    s.families.insert(name.into(), kind.into()).is_none(),
                    "{name} declared twice"
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name_end = line.find(['{', ' ']).expect("sample line");
            let name = &line[..name_end];
            assert!(valid_name(name), "bad metric name {name:?}");
            let (ls, rest) = labels(&line[name_end..]);
            let value: f64 = rest
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| {
                    name.strip_suffix(suf)
                        .filter(|f| s.families.get(*f).is_some_and(|k| k == "histogram"))
                })
                .unwrap_or(name);
            assert!(s.families.contains_key(family), "{name} has no # TYPE");
            assert!(
                seen.insert(line[..line.len() - rest.len()].to_owned()),
                "duplicate series {line}"
            );
            s.samples.push((name.to_owned(), ls, value));
        }
        s
    }

    /// The sum of `name`'s samples whose labels include all of `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.matching(name, want).map(|(_, v)| v).sum()
    }

    /// How many of `name`'s samples match `want`.
    pub fn count(&self, name: &str, want: &[(&str, &str)]) -> usize {
        self.matching(name, want).count()
    }

    fn matching<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, ls, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, ls, v)| (ls, *v))
    }

    /// Every sample name, histogram parts included.
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|(n, _, _)| n.clone()).collect()
    }
}

/// Scrapes `path` on the metrics listener.
pub fn scrape(addr: SocketAddr, path: &str) -> Scrape {
    let r = Conn::connect(addr).get(path);
    assert_eq!(r.status, 200, "{}", r.text());
    Scrape::parse(&r.text())
}

/// The `prometheus` binary, or a loud note that it is missing.
pub fn binary() -> Option<String> {
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

/// A Prometheus server scraping one target every second.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(bin: &str, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: ringway\n    metrics_path: /apisix/prometheus/metrics\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = super::redis::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "prometheus did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// `/api/v1/query` for `q`: the result vector.
    pub fn query(&self, q: &str) -> serde_json::Value {
        let enc: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let r = Conn::connect(self.addr).get(&format!("/api/v1/query?query={enc}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"].clone()
    }

    /// The single value of `q`, once it equals `want` (a scrape may not
    /// have happened yet), or what it is after 20 s.
    pub fn value_once(&self, q: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.query(q);
            let v = r[0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN);
            if (v - want).abs() < 1e-9 || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
