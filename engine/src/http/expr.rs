//! APISIX's condition language (lua-resty-expr), as used by a plugin's
//! `_meta.filter`: a list of `[variable, operator, value]` rules that must
//! all hold, or `["OR" | "AND" | "!OR" | "!AND", rule, rule, …]`, nested
//! freely; `[variable, "!", operator, value]` negates one rule and
//! `[variable, value]` means `==`.
//!
//! Operators: `==`, `~=` (string equality, numeric when the value is a
//! number), `>`, `>=`, `<`, `<=` (numeric; false if either side is not a
//! number), `~~` and `~*` (regex search, the second case-insensitive),
//! `in` (one of a list), `ipmatch` (an address in one of a list of IPs or
//! CIDRs). A variable that is not set is "nil", as in APISIX: it equals
//! nothing but `null`, and only `~=` and negations are true of it.
//!
//! Differences from APISIX, on purpose: regexes are Rust `regex` syntax
//! (PCRE's look-arounds and back-references are refused at load, with the
//! rule's path); `in` compares a number in its list numerically (APISIX's
//! variables are strings there, so `["status", "in", [500]]` never held);
//! `has` is refused (it needs a list-valued variable, and every variable
//! here is a string). Everything is checked when the config loads.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::Value;

use crate::config::{ConfigError, FieldPath};

/// A compiled condition. The empty list always holds.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Option<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    All { negate: bool, of: Vec<Node> },
    Any { negate: bool, of: Vec<Node> },
    Rule(Rule),
}

#[derive(Debug, Clone)]
struct Rule {
    var: String,
    negate: bool,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    /// `==` (and, negated, `~=`).
    Eq(Value),
    Num(Cmp, f64),
    Regex(regex::bytes::Regex),
    In(Vec<Value>),
    IpMatch(Vec<Cidr>),
}

#[derive(Debug, Clone, Copy)]
enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy)]
struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Expr {
    /// Compiles `value`; `at` names it in errors.
    pub fn compile(value: &Value, at: &FieldPath) -> Result<Expr, ConfigError> {
        let list = value.as_array().ok_or_else(|| {
            at.error("must be a list of rules, e.g. [[\"arg_x\", \"==\", \"1\"]]")
        })?;
        if list.is_empty() {
            return Ok(Expr { root: None });
        }
        if !list[0].is_array() && logic(&list[0]).is_none() {
            return Err(at.error(
                "rules must be wrapped in a list: [[\"var\", \"op\", value]], or start with \"OR\" / \"AND\"",
            ));
        }
        Ok(Expr {
            root: Some(node(list, at)?),
        })
    }

    /// [`Expr::compile`] of an optional field (`vars`, `include_*_expr`).
    pub fn compile_optional(
        value: Option<&Value>,
        at: &FieldPath,
    ) -> Result<Option<std::sync::Arc<Expr>>, ConfigError> {
        value
            .map(|v| Expr::compile(v, at).map(std::sync::Arc::new))
            .transpose()
    }

    /// Whether the condition holds, reading variables through `var`.
    pub fn eval<'v>(&self, var: &dyn Fn(&str) -> Option<Cow<'v, [u8]>>) -> bool {
        self.root.as_ref().is_none_or(|n| n.eval(var))
    }
}

/// `"OR"`, `"!AND"`, …: (is it OR, negated).
fn logic(v: &Value) -> Option<(bool, bool)> {
    match v.as_str()?.to_ascii_uppercase().as_str() {
        "AND" => Some((false, false)),
        "!AND" => Some((false, true)),
        "OR" => Some((true, false)),
        "!OR" => Some((true, true)),
        _ => None,
    }
}

fn node(list: &[Value], at: &FieldPath) -> Result<Node, ConfigError> {
    let Some(first) = list.first() else {
        return Err(at.error("an empty rule"));
    };
    let sub = |i: usize, v: &Value| -> Result<Node, ConfigError> {
        let at = at.index(i);
        match v.as_array() {
            Some(l) => node(l, &at),
            None => Err(at.error("must be a rule: a list like [\"var\", \"op\", value]")),
        }
    };
    if first.is_array() {
        let of = list
            .iter()
            .enumerate()
            .map(|(i, v)| sub(i, v))
            .collect::<Result<_, _>>()?;
        return Ok(Node::All { negate: false, of });
    }
    if let Some((or, negate)) = logic(first) {
        if list.len() <= 2 {
            return Err(at.error("a logical operator needs at least two rules after it"));
        }
        let of = list
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, v)| sub(i, v))
            .collect::<Result<_, _>>()?;
        return Ok(if or {
            Node::Any { negate, of }
        } else {
            Node::All { negate, of }
        });
    }
    rule(list, at).map(Node::Rule)
}

fn rule(list: &[Value], at: &FieldPath) -> Result<Rule, ConfigError> {
    let var = list[0]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| at.index(0).error("must be a variable name"))?
        .to_owned();
    let (negate, op_at, rest) = match list.len() {
        2 => {
            return Ok(Rule {
                var,
                negate: false,
                op: Op::Eq(list[1].clone()),
            })
        }
        3 => (false, 1, &list[2]),
        4 if list[1].as_str() == Some("!") => (true, 2, &list[3]),
        4 => {
            return Err(at
                .index(1)
                .error("a four-part rule is [var, \"!\", op, value]"))
        }
        _ => return Err(at.error("a rule is [var, op, value] or [var, \"!\", op, value]")),
    };
    let op_name = list[op_at]
        .as_str()
        .ok_or_else(|| at.index(op_at).error("must be an operator"))?
        .to_ascii_lowercase();
    let value_at = at.index(op_at + 1);
    let op = match op_name.as_str() {
        "==" => Op::Eq(rest.clone()),
        "~=" => {
            return Ok(Rule {
                var,
                negate: !negate,
                op: Op::Eq(rest.clone()),
            })
        }
        ">" | ">=" | "<" | "<=" => {
            let n = number(rest).ok_or_else(|| value_at.error("must be a number"))?;
            let cmp = match op_name.as_str() {
                ">" => Cmp::Gt,
                ">=" => Cmp::Ge,
                "<" => Cmp::Lt,
                _ => Cmp::Le,
            };
            Op::Num(cmp, n)
        }
        "~~" | "~*" => {
            let pattern = rest
                .as_str()
                .ok_or_else(|| value_at.error("must be a regular expression"))?;
            let re = regex::bytes::RegexBuilder::new(pattern)
                .case_insensitive(op_name == "~*")
                .build()
                .map_err(|e| value_at.error(format!("is not a valid regular expression: {e}")))?;
            Op::Regex(re)
        }
        "in" => Op::In(
            rest.as_array()
                .ok_or_else(|| value_at.error("must be a list"))?
                .clone(),
        ),
        "ipmatch" => {
            let items: Vec<&Value> = match rest {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            let cidrs = items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().and_then(cidr).ok_or_else(|| {
                        let at = if rest.is_array() {
                            value_at.index(i)
                        } else {
                            value_at.clone()
                        };
                        at.error("must be an IP address or CIDR")
                    })
                })
                .collect::<Result<_, _>>()?;
            Op::IpMatch(cidrs)
        }
        "has" => {
            return Err(at
                .index(op_at)
                .error("`has` needs a list-valued variable; ringway's variables are strings"))
        }
        other => {
            return Err(at.index(op_at).error(format!(
                "unknown operator `{other}` (expected ==, ~=, >, >=, <, <=, ~~, ~*, in, ipmatch)"
            )))
        }
    };
    Ok(Rule { var, negate, op })
}

/// Lua's `tonumber` on a JSON value: numbers, and strings that read as one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_number(s.as_bytes()),
        _ => None,
    }
}

fn parse_number(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?.trim();
    let n: f64 = s.parse().ok()?;
    // Rust reads "inf" and "NaN"; Lua's tonumber does not.
    n.is_finite().then_some(n)
}

fn cidr(s: &str) -> Option<Cidr> {
    let (ip, bits) = match s.split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u8>().ok()?)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(Cidr { net: ip, bits })
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            _ => ip,
        };
        let (net, addr, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (net >> shift) == (addr >> shift)
    }
}

impl Node {
    fn eval<'v>(&self, var: &dyn Fn(&str) -> Option<Cow<'v, [u8]>>) -> bool {
        match self {
            Node::All { negate, of } => of.iter().all(|n| n.eval(var)) != *negate,
            Node::Any { negate, of } => of.iter().any(|n| n.eval(var)) != *negate,
            Node::Rule(r) => r.holds(var(&r.var).as_deref()) != r.negate,
        }
    }
}

impl Rule {
    fn holds(&self, v: Option<&[u8]>) -> bool {
        match &self.op {
            Op::Eq(want) => equals(v, want),
            Op::Num(cmp, n) => match v.and_then(parse_number) {
                None => false,
                Some(x) => match cmp {
                    Cmp::Gt => x > *n,
                    Cmp::Ge => x >= *n,
                    Cmp::Lt => x < *n,
                    Cmp::Le => x <= *n,
                },
            },
            Op::Regex(re) => v.is_some_and(|v| re.is_match(v)),
            Op::In(list) => v.is_some() && list.iter().any(|w| equals(v, w)),
            Op::IpMatch(cidrs) => v
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| cidrs.iter().any(|c| c.contains(ip))),
        }
    }
}

/// lua-resty-expr's `==`: a number compares numerically, `null` matches
/// an unset variable, a string byte for byte; anything else never holds.
fn equals(v: Option<&[u8]>, want: &Value) -> bool {
    match want {
        Value::Null => v.is_none(),
        Value::String(s) => v == Some(s.as_bytes()),
        Value::Number(n) => match (v.and_then(parse_number), n.as_f64()) {
            (Some(x), Some(n)) => x == n,
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, vars: &[(&str, &str)]) -> bool {
        let e = Expr::compile(&rule, &FieldPath::root().field("filter")).unwrap();
        e.eval(&|name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| Cow::Owned(v.as_bytes().to_vec()))
        })
    }

    fn refused(rule: Value) -> String {
        Expr::compile(&rule, &FieldPath::root().field("filter"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn comparisons() {
        let v = [("arg_v", "2"), ("http_x", "Hello"), ("status", "502")];
        assert!(holds(json!([]), &v));
        assert!(holds(json!([["arg_v", "==", "2"]]), &v));
        assert!(holds(json!([["arg_v", "2"]]), &v));
        assert!(holds(json!([["arg_v", "==", 2]]), &v));
        assert!(!holds(json!([["arg_v", "==", "02"]]), &v));
        assert!(holds(json!([["arg_v", "==", 2.0]]), &v));
        assert!(holds(json!([["arg_v", "~=", "3"]]), &v));
        assert!(holds(json!([["status", ">=", 500]]), &v));
        assert!(!holds(json!([["status", "<", "500"]]), &v));
        assert!(!holds(json!([["http_x", ">", 1]]), &v));
        assert!(holds(json!([["http_x", "~~", "^Hel"]]), &v));
        assert!(!holds(json!([["http_x", "~~", "^hel"]]), &v));
        assert!(holds(json!([["http_x", "~*", "^hel"]]), &v));
        assert!(holds(json!([["status", "in", [500, 502]]]), &v));
        assert!(holds(json!([["http_x", "IN", ["Hi", "Hello"]]]), &v));
        assert!(!holds(json!([["http_x", "in", ["hello"]]]), &v));
        assert!(holds(json!([["http_x", "!", "==", "Hi"]]), &v));
        // Both must hold.
        assert!(!holds(
            json!([["arg_v", "==", "2"], ["http_x", "==", "no"]]),
            &v
        ));
    }

    #[test]
    fn unset_variables_are_nil() {
        let v = [("arg_v", "2")];
        assert!(!holds(json!([["arg_nope", "==", "x"]]), &v));
        assert!(holds(json!([["arg_nope", "~=", "x"]]), &v));
        assert!(holds(json!([["arg_nope", "==", null]]), &v));
        assert!(!holds(json!([["arg_v", "==", null]]), &v));
        assert!(!holds(json!([["arg_nope", ">", 1]]), &v));
        assert!(!holds(json!([["arg_nope", "~~", ".*"]]), &v));
        assert!(!holds(json!([["arg_nope", "in", [null]]]), &v));
        assert!(holds(json!([["arg_nope", "!", "in", ["x"]]]), &v));
    }

    #[test]
    fn logic_and_nesting() {
        let v = [("a", "1"), ("b", "2")];
        assert!(holds(json!(["OR", ["a", "==", "9"], ["b", "==", "2"]]), &v));
        assert!(!holds(
            json!(["!OR", ["a", "==", "9"], ["b", "==", "2"]]),
            &v
        ));
        assert!(holds(
            json!(["and", ["a", "==", "1"], ["b", "==", "2"]]),
            &v
        ));
        assert!(!holds(
            json!(["!AND", ["a", "==", "1"], ["b", "==", "2"]]),
            &v
        ));
        assert!(holds(
            json!([
                ["a", "==", "1"],
                ["OR", ["b", "==", "9"], ["AND", ["a", "1"], ["b", "2"]]]
            ]),
            &v
        ));
        assert!(!holds(
            json!([["a", "==", "1"], ["OR", ["b", "==", "9"], ["b", "==", "8"]]]),
            &v
        ));
    }

    #[test]
    fn ip_match() {
        let v = [
            ("remote_addr", "10.1.2.3"),
            ("v6", "::ffff:10.1.2.3"),
            ("bad", "x"),
        ];
        assert!(holds(json!([["remote_addr", "ipmatch", "10.0.0.0/8"]]), &v));
        assert!(holds(
            json!([["remote_addr", "ipmatch", ["192.168.0.1", "10.1.2.3"]]]),
            &v
        ));
        assert!(!holds(
            json!([["remote_addr", "ipmatch", ["10.1.2.0/31"]]]),
            &v
        ));
        assert!(holds(
            json!([["remote_addr", "ipmatch", ["0.0.0.0/0"]]]),
            &v
        ));
        assert!(holds(json!([["v6", "ipmatch", "10.1.0.0/16"]]), &v));
        assert!(holds(json!([["v6", "ipmatch", "::ffff:0:0/96"]]), &v));
        assert!(!holds(json!([["bad", "ipmatch", "0.0.0.0/0"]]), &v));
        assert!(!holds(json!([["unset", "ipmatch", "0.0.0.0/0"]]), &v));
    }

    #[test]
    fn bad_rules_are_refused_with_their_path() {
        let cases = [
            (json!({"a": 1}), "filter: must be a list"),
            (json!(["a", "==", "1"]), "filter: rules must be wrapped"),
            (
                json!([["a", "=", "1"]]),
                "filter[0][1]: unknown operator `=`",
            ),
            (json!([["a", ">", "x"]]), "filter[0][2]: must be a number"),
            (
                json!([["a", "~~", "(?<=a)b"]]),
                "filter[0][2]: is not a valid regular expression",
            ),
            (json!([["a", "in", "x"]]), "filter[0][2]: must be a list"),
            (
                json!([["a", "ipmatch", ["10.0.0.0/33"]]]),
                "filter[0][2][0]: must be an IP",
            ),
            (json!([["a", "has", "x"]]), "filter[0][1]: `has` needs"),
            (
                json!([["a", "not", "==", "x"]]),
                "filter[0][1]: a four-part rule",
            ),
            (
                json!([[1, "==", "x"]]),
                "filter[0][0]: must be a variable name",
            ),
            (
                json!(["OR", ["a", "==", "1"]]),
                "filter: a logical operator needs",
            ),
            (json!([["a", "==", "1"], "b"]), "filter[1]: must be a rule"),
            (
                json!(["OR", ["a", "1"], ["b", "=", "2"]]),
                "filter[2][1]: unknown operator",
            ),
        ];
        for (rule, want) in cases {
            let got = refused(rule.clone());
            assert!(got.contains(want), "{rule}: got `{got}`, want `{want}`");
        }
    }
}
