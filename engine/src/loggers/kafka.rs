//! A small blocking Kafka producer for the logger thread: ApiVersions to
//! pick protocol versions, Metadata to find each partition's leader
//! (asking the broker to create a missing topic), Produce with one v2
//! record batch per request. Messages are encoded by the `kafka-protocol`
//! crate; this file owns the connections, the framing and the choices.
//!
//! Versions: Produce 3–8 and Metadata 4–8 (both exist on Kafka 0.11
//! through 4.x, which dropped the older ones), the highest the broker
//! supports.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const PRODUCE: (i16, i16) = (3, 8);
const METADATA: (i16, i16) = (4, 8);
/// Largest response accepted (a metadata answer for a big cluster fits).
const MAX_RESPONSE: usize = 64 << 20;

/// Where and how to produce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProducerConfig {
    pub brokers: Vec<(String, u16)>,
    pub topic: String,
    pub key: Option<String>,
    /// `required_acks`: 1 (leader) or -1 (all in-sync replicas).
    pub acks: i16,
    pub timeout: Duration,
    /// How long partition leaders are trusted before asking again.
    pub meta_refresh: Duration,
    /// Most bytes of entries in one record batch (`producer_batch_size`;
    /// brokers refuse batches over `message.max.bytes`, 1 MiB by default).
    pub max_batch_bytes: usize,
}

/// A failed produce; `retriable` when asking for leaders again may help
/// (a lost connection, a moved leader, a topic being created).
struct SendError {
    msg: String,
    retriable: bool,
}

impl From<String> for SendError {
    fn from(msg: String) -> SendError {
        SendError {
            msg,
            retriable: true,
        }
    }
}

struct Partitions {
    /// (partition, leader's address), sorted by partition.
    leaders: Vec<(i32, String)>,
    fetched: Instant,
}

pub struct Producer {
    cfg: ProducerConfig,
    conns: HashMap<String, TcpStream>,
    versions: Option<(i16, i16)>,
    partitions: Option<Partitions>,
    next_partition: usize,
    correlation: i32,
}

impl Producer {
    pub fn new(cfg: ProducerConfig) -> Producer {
        Producer {
            cfg,
            conns: HashMap::new(),
            versions: None,
            partitions: None,
            next_partition: 0,
            correlation: 0,
        }
    }

    /// Produces `values` in record batches of at most `max_batch_bytes`,
    /// each to one partition (the key's, else the next in turn), removing
    /// what was produced: after an error `values` holds what is left, so a
    /// retry sends nothing twice. A lost connection or a moved leader is
    /// retried once at once with fresh metadata.
    pub fn send(&mut self, values: &mut Vec<Vec<u8>>) -> Result<(), String> {
        while !values.is_empty() {
            let n = chunk_len(values, self.cfg.max_batch_bytes);
            let mut r = self.try_send(&values[..n]);
            if let Err(e) = &r {
                self.conns.clear();
                self.partitions = None;
                if e.retriable {
                    r = self.try_send(&values[..n]);
                    if r.is_err() {
                        self.conns.clear();
                        self.partitions = None;
                    }
                }
            }
            r.map_err(|e| e.msg)?;
            values.drain(..n);
        }
        Ok(())
    }

    fn try_send(&mut self, values: &[Vec<u8>]) -> Result<(), SendError> {
        let (produce_v, _) = self.versions()?;
        let stale = self
            .partitions
            .as_ref()
            .is_none_or(|p| p.fetched.elapsed() >= self.cfg.meta_refresh);
        if stale {
            self.partitions = Some(self.metadata()?);
        }
        let parts = &self.partitions.as_ref().expect("fetched").leaders;
        let idx = match &self.cfg.key {
            // The consistent-hash balancer's stable hash: one key, one
            // partition, in every process.
            Some(k) => crate::balance::chash::hash(k.as_bytes()) as usize % parts.len(),
            None => {
                self.next_partition = (self.next_partition + 1) % parts.len();
                self.next_partition
            }
        };
        let (partition, leader) = parts[idx].clone();
        let records = encode_batch(self.cfg.key.as_deref(), values)?;
        let req = ProduceRequest::default()
            .with_acks(self.cfg.acks)
            .with_timeout_ms(self.cfg.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(self.cfg.topic.clone())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let mut body = self.call(&leader, ApiKey::Produce, produce_v, &req)?;
        let resp = ProduceResponse::decode(&mut body, produce_v).map_err(|e| e.to_string())?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    // Unknown topic or partition, leader not available, not
                    // the leader, network exception: stale metadata.
                    let retriable = matches!(p.error_code, 3 | 5 | 6 | 13);
                    let msg = format!(
                        "produce to {}/{} failed: Kafka error {}{}",
                        self.cfg.topic,
                        p.index,
                        p.error_code,
                        p.error_message
                            .as_ref()
                            .map(|m| format!(" ({})", m.as_str()))
                            .unwrap_or_default()
                    );
                    return Err(SendError { msg, retriable });
                }
            }
        }
        Ok(())
    }

    /// (Produce, Metadata) versions, asked once per connection set.
    fn versions(&mut self) -> Result<(i16, i16), String> {
        if let Some(v) = self.versions {
            return Ok(v);
        }
        let broker = self.any_broker()?;
        let mut body = self.call(
            &broker,
            ApiKey::ApiVersions,
            0,
            &ApiVersionsRequest::default(),
        )?;
        let resp = ApiVersionsResponse::decode(&mut body, 0).map_err(|e| e.to_string())?;
        if resp.error_code != 0 {
            return Err(format!(
                "ApiVersions failed: Kafka error {}",
                resp.error_code
            ));
        }
        let pick = |key: ApiKey, (lo, hi): (i16, i16)| -> Result<i16, String> {
            let v = resp
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .ok_or_else(|| format!("the broker does not support {key:?}"))?;
            let best = v.max_version.min(hi);
            if best < lo.max(v.min_version) {
                return Err(format!(
                    "the broker supports {key:?} v{}..v{}, ringway needs v{lo}..v{hi}",
                    v.min_version, v.max_version
                ));
            }
            Ok(best)
        };
        let v = (
            pick(ApiKey::Produce, PRODUCE)?,
            pick(ApiKey::Metadata, METADATA)?,
        );
        self.versions = Some(v);
        Ok(v)
    }

    /// The topic's partitions and their leaders; a missing topic is
    /// created by the broker (auto-creation) and asked for again.
    fn metadata(&mut self) -> Result<Partitions, String> {
        let (_, v) = self.versions()?;
        let deadline = Instant::now() + self.cfg.timeout;
        loop {
            let broker = self.any_broker()?;
            let req = MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                    TopicName(StrBytes::from_string(self.cfg.topic.clone())),
                ))]))
                .with_allow_auto_topic_creation(true);
            let mut body = self.call(&broker, ApiKey::Metadata, v, &req)?;
            let resp = MetadataResponse::decode(&mut body, v).map_err(|e| e.to_string())?;
            let addr_of = |id: BrokerId| {
                resp.brokers
                    .iter()
                    .find(|b| b.node_id == id)
                    .map(|b| format!("{}:{}", b.host.as_str(), b.port))
            };
            let topic = resp.topics.first().ok_or("metadata without the topic")?;
            let mut leaders: Vec<(i32, String)> = topic
                .partitions
                .iter()
                .filter(|p| p.error_code == 0 || p.error_code == 9) // 9: replica not available
                .filter_map(|p| Some((p.partition_index, addr_of(p.leader_id)?)))
                .collect();
            leaders.sort();
            if topic.error_code == 0 && !leaders.is_empty() {
                return Ok(Partitions {
                    leaders,
                    fetched: Instant::now(),
                });
            }
            // 3: unknown topic (being created), 5: leader not available yet.
            let retriable = matches!(topic.error_code, 0 | 3 | 5);
            if !retriable || Instant::now() >= deadline {
                return Err(format!(
                    "no partition leader for topic {} (Kafka error {})",
                    self.cfg.topic, topic.error_code
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A broker from the configured list that accepts a connection.
    fn any_broker(&mut self) -> Result<String, String> {
        if let Some(a) = self.conns.keys().next() {
            return Ok(a.clone());
        }
        let mut last = String::from("no brokers");
        for (h, p) in self.cfg.brokers.clone() {
            let addr = format!("{h}:{p}");
            match self.conn(&addr) {
                Ok(_) => return Ok(addr),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn conn(&mut self, addr: &str) -> Result<&mut TcpStream, String> {
        if !self.conns.contains_key(addr) {
            let sa = addr
                .to_socket_addrs()
                .map_err(|e| format!("{addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("{addr}: no address"))?;
            let s = TcpStream::connect_timeout(&sa, self.cfg.timeout)
                .map_err(|e| format!("connect to Kafka broker {addr}: {e}"))?;
            s.set_read_timeout(Some(self.cfg.timeout)).ok();
            s.set_write_timeout(Some(self.cfg.timeout)).ok();
            s.set_nodelay(true).ok();
            self.conns.insert(addr.to_owned(), s);
        }
        Ok(self.conns.get_mut(addr).expect("inserted"))
    }

    /// One request and its response body (after the response header).
    fn call<M: Encodable>(
        &mut self,
        addr: &str,
        key: ApiKey,
        version: i16,
        msg: &M,
    ) -> Result<Bytes, String> {
        self.correlation = self.correlation.wrapping_add(1);
        let correlation = self.correlation;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(StrBytes::from_static_str("ringway")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| e.to_string())?;
        msg.encode(&mut buf, version).map_err(|e| e.to_string())?;
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let s = self.conn(addr)?;
        let io = |e: std::io::Error| format!("Kafka broker {addr}: {e}");
        s.write_all(&buf).map_err(io)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(io)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RESPONSE {
            return Err(format!("Kafka broker {addr}: response of {len} bytes"));
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).map_err(io)?;
        let mut body = Bytes::from(body);
        let rh = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| e.to_string())?;
        if rh.correlation_id != correlation {
            return Err(format!(
                "Kafka broker {addr}: answer {} to request {correlation}",
                rh.correlation_id
            ));
        }
        Ok(body)
    }
}

/// How many of `values` (at least one) fit in `max_bytes` of record batch.
fn chunk_len(values: &[Vec<u8>], max_bytes: usize) -> usize {
    // Batch header, and per record its framing and key (an estimate on the
    // safe side).
    let mut size = 61;
    let mut n = 0;
    for v in values {
        size += v.len() + 64;
        if n > 0 && size > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// One v2 record batch holding `values`, each with `key`.
fn encode_batch(key: Option<&str>, values: &[Vec<u8>]) -> Result<Bytes, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let key = key.map(|k| Bytes::copy_from_slice(k.as_bytes()));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset minus
            // sequence is constant; the batch's base sequence is the
            // first record's, -1 (no idempotent producer).
            sequence: i as i32 - 1,
            timestamp: now,
            key: key.clone(),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn batches_round_trip_through_the_decoder() {
        let b = encode_batch(Some("key1"), &[b"{\"a\":1}".to_vec(), b"x".to_vec()]).unwrap();
        let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].key.as_deref(), Some(&b"key1"[..]));
        assert_eq!(set.records[1].value.as_deref(), Some(&b"x"[..]));
        assert_eq!(set.records[1].offset, 1);
    }

    #[test]
    fn batches_are_cut_to_the_byte_limit() {
        let v = |n: usize| vec![b'x'; n];
        assert_eq!(chunk_len(&[v(100), v(100), v(100)], 1 << 20), 3);
        assert_eq!(chunk_len(&[v(400), v(400), v(400)], 1000), 2);
        // One entry over the limit still goes (the broker decides).
        assert_eq!(chunk_len(&[v(5000), v(1)], 1000), 1);
    }

    #[test]
    fn an_unreachable_broker_is_an_error_naming_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut p = Producer::new(ProducerConfig {
            brokers: vec![("127.0.0.1".into(), port)],
            topic: "t".into(),
            key: None,
            acks: 1,
            timeout: Duration::from_millis(500),
            meta_refresh: Duration::from_secs(30),
            max_batch_bytes: 1 << 20,
        });
        let mut values = vec![b"x".to_vec()];
        let e = p.send(&mut values).unwrap_err();
        assert_eq!(values.len(), 1, "nothing was sent");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
