//! How objects name what they become, as the APISIX Ingress Controller
//! names them (`api/adc/types.go`, `pkg/id`), so logs, metrics and the
//! Admin API show the names an APISIX operator already knows:
//!
//! | resource | name | id |
//! |---|---|---|
//! | service of ApisixRoute rule *i* / HTTPRoute rule *i* | `ns_name_i` | crc32 of the name |
//! | route of ApisixRoute rule named *r* | `ns_name_r` | crc32 of the name |
//! | route of HTTPRoute rule *i*, match *j* | `ns_name_i-j` | crc32 of the name |
//! | consumer (ApisixConsumer, Consumer) | username `ns_name` | — |
//! | global rule (ApisixGlobalRule) | — | crc32 of `ns_name` |
//!
//! The id is the CRC-32 (IEEE) of the name in lower-case hex without
//! leading zeros (Go's `fmt.Sprintf("%x", crc32.ChecksumIEEE(name))`).

/// `parts` joined with `_` (the controller's `Compose*Name`).
pub fn compose(parts: &[&str]) -> String {
    parts.join("_")
}

/// The controller's `id.GenID`: CRC-32 (IEEE) of `name`, lower-case hex.
pub fn gen_id(name: &str) -> String {
    format!("{:x}", crc32fast::hash(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_controllers() {
        // crc32("123456789") is the standard check value 0xcbf43926.
        assert_eq!(gen_id("123456789"), "cbf43926");
        // No zero padding, as Go's %x.
        assert_eq!(gen_id("a"), "e8b7be43");
        assert_eq!(
            compose(&["aic", "ai-proxy-multi-route", "0"]),
            "aic_ai-proxy-multi-route_0"
        );
    }
}
