//! `cost_expr` (`limit_strategy: expression`): an arithmetic expression
//! over the provider's own usage fields that says what a request costs,
//! e.g. `input_tokens + cache_read_input_tokens * 0.1 + output_tokens`.
//!
//! APISIX evaluates it as Lua; ringway parses the arithmetic subset once,
//! at load: numbers, variables, `+ - * / % ^` (`^` is power, binding
//! tighter than unary minus, right-associative, as in Lua), parentheses,
//! and `abs`, `ceil`, `floor`, `max`, `min` (also as `math.abs`, …). Any
//! other Lua is refused at load with the position. Variables are the
//! numeric leaves of the usage object by bare name, shallower ones first
//! (`cached_tokens` from `prompt_tokens_details`); a missing one is 0. A
//! negative result costs 0; a result that is not finite is not charged
//! (and logged). The cost is rounded to the nearest token.
//!
//! An expression is at most [`MAX_LEN`] bytes and its tree at most
//! [`MAX_DEPTH`] levels deep (parentheses, operators and calls alike), so
//! parsing, evaluating, cloning and dropping it — all recursive — never
//! go deeper than that, whatever an operator (or the Admin API) sends.

use std::collections::BTreeMap;

use serde_json::Value;

mod parser;

use parser::Parser;

/// Longest `cost_expr` accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest expression accepted: nesting of parentheses, unary minus,
/// function calls, and chains of operators (`a + b + c` is two levels).
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    Var(String),
    Neg(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Abs,
    Ceil,
    Floor,
    Max,
    Min,
}

/// A parsed `cost_expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct CostExpr {
    root: Node,
}

impl CostExpr {
    /// Parses `src`; the error says what is wrong and where.
    pub fn parse(src: &str) -> Result<CostExpr, String> {
        if src.len() > MAX_LEN {
            return Err(format!(
                "is {} bytes long; at most {MAX_LEN} are allowed",
                src.len()
            ));
        }
        let mut p = Parser::new(src.as_bytes());
        let (root, _) = p.expr(0)?;
        p.ws();
        if !p.at_end() {
            return Err(p.err("unexpected text"));
        }
        Ok(CostExpr { root })
    }

    /// The cost for a usage object (the provider's `usage`, or Anthropic's
    /// fields merged across a stream's events); `None` when the result is
    /// not a finite number.
    pub fn cost(&self, usage: &Value) -> Option<u64> {
        let leaves = leaves(usage);
        let v = eval(&self.root, &leaves);
        if !v.is_finite() {
            return None;
        }
        Some((v.max(0.0) + 0.5).floor() as u64)
    }
}

/// Numeric leaves by bare name, breadth first so shallower keys win, keys
/// of one level in sorted order (APISIX's `inject_usage_vars`). The usage
/// object comes from the upstream: a map, so thousands of keys cost
/// thousands of steps, not millions.
fn leaves(usage: &Value) -> BTreeMap<&str, f64> {
    let mut out: BTreeMap<&str, f64> = BTreeMap::new();
    let mut level = vec![usage];
    while !level.is_empty() {
        let mut next = Vec::new();
        for v in level {
            let Some(obj) = v.as_object() else { continue };
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            for k in keys {
                match &obj[k] {
                    Value::Number(n) => {
                        out.entry(k.as_str()).or_insert(n.as_f64().unwrap_or(0.0));
                    }
                    o @ Value::Object(_) => next.push(o),
                    _ => {}
                }
            }
        }
        level = next;
    }
    out
}

/// Recursive, as deep as the tree: at most [`MAX_DEPTH`].
fn eval(n: &Node, vars: &BTreeMap<&str, f64>) -> f64 {
    match n {
        Node::Num(x) => *x,
        Node::Var(name) => vars.get(name.as_str()).copied().unwrap_or(0.0),
        Node::Neg(a) => -eval(a, vars),
        Node::Bin(op, a, b) => {
            let (a, b) = (eval(a, vars), eval(b, vars));
            match op {
                Op::Add => a + b,
                Op::Sub => a - b,
                Op::Mul => a * b,
                Op::Div => a / b,
                // Lua: a - floor(a / b) * b.
                Op::Mod => a - (a / b).floor() * b,
                Op::Pow => a.powf(b),
            }
        }
        Node::Call(f, args) => {
            let mut vals = args.iter().map(|a| eval(a, vars));
            match f {
                Func::Abs => vals.next().unwrap_or(f64::NAN).abs(),
                Func::Ceil => vals.next().unwrap_or(f64::NAN).ceil(),
                Func::Floor => vals.next().unwrap_or(f64::NAN).floor(),
                Func::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                Func::Min => vals.fold(f64::INFINITY, f64::min),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cost(src: &str, usage: Value) -> Option<u64> {
        CostExpr::parse(src).unwrap().cost(&usage)
    }

    #[test]
    fn arithmetic_follows_lua() {
        let none = json!({});
        assert_eq!(cost("1 + 2 * 3", none.clone()), Some(7));
        assert_eq!(cost("(1 + 2) * 3", none.clone()), Some(9));
        assert_eq!(
            cost("2 ^ 3 ^ 2", none.clone()),
            Some(512),
            "right-associative"
        );
        assert_eq!(
            cost("-2 ^ 2 + 10", none.clone()),
            Some(6),
            "^ above unary minus"
        );
        assert_eq!(
            cost("10 - 4 - 3", none.clone()),
            Some(3),
            "left-associative"
        );
        assert_eq!(
            cost("7 % 3 + -7 % 3", none.clone()),
            Some(3),
            "Lua's modulo: 1 + 2"
        );
        assert_eq!(
            cost(
                "max(1, 9, 4) + min(3, 2) + abs(-1) + ceil(0.2) + math.floor(1.9)",
                none.clone()
            ),
            Some(14)
        );
        assert_eq!(cost("2.5", none.clone()), Some(3), "rounded half up");
        assert_eq!(cost("1.2e1", none.clone()), Some(12));
        assert_eq!(
            cost("1 - 5", none.clone()),
            Some(0),
            "negative costs nothing"
        );
        assert_eq!(cost("1 / 0", none), None, "not finite: not charged");
    }

    #[test]
    fn variables_are_the_usage_leaves_shallowest_first() {
        let openai = json!({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                            "prompt_tokens_details": {"cached_tokens": 80, "audio_tokens": 0}});
        assert_eq!(
            cost(
                "prompt_tokens - cached_tokens * 0.9 + completion_tokens",
                openai
            ),
            Some(48)
        );
        let anthropic =
            json!({"input_tokens": 10, "cache_read_input_tokens": 1000, "output_tokens": 5});
        assert_eq!(
            cost("input_tokens + cache_read_input_tokens * 0.1 + cache_creation_input_tokens * 1.25 + output_tokens", anthropic),
            Some(115)
        );
        // A deeper key of the same name does not hide a shallower one.
        let nested = json!({"a": 1, "d": {"a": 50}});
        assert_eq!(cost("a", nested), Some(1));
    }

    #[test]
    fn anything_else_is_refused_with_its_position() {
        for (src, want) in [
            ("", "expected a number"),
            ("1 +", "expected a number"),
            ("(1", "expected `)`"),
            ("1 2", "unexpected text"),
            ("os.exit()", "unexpected text"),
            ("a // 2", "`//`"),
            ("sqrt(4)", "unknown function `sqrt`"),
            ("max()", "unexpected character"),
            ("abs(1, 2)", "wrong number of arguments"),
            ("a and b", "unexpected text"),
            ("not a", "`not` is not arithmetic"),
            ("1 == 1", "unexpected text"),
        ] {
            let e = CostExpr::parse(src).unwrap_err();
            assert!(e.contains(want), "{src}: {e}");
            assert!(e.contains("at character"), "{src}: {e}");
        }
    }

    #[test]
    fn depth_and_length_are_bounded() {
        // Every way to nest: each at the limit is taken, one more refused
        // (300,000 parentheses once overflowed the parser's stack; a long
        // sum, evaluation's and drop's).
        type Shape = fn(usize) -> String;
        let shapes: [(&str, Shape); 5] = [
            ("parens", |n| format!("{}1{}", "(".repeat(n), ")".repeat(n))),
            ("sum", |n| format!("1{}", "+1".repeat(n))),
            ("minus", |n| format!("{}1", "-".repeat(n))),
            ("power", |n| format!("2{}", "^1".repeat(n))),
            ("calls", |n| {
                format!("{}1{}", "abs(".repeat(n), ")".repeat(n))
            }),
        ];
        for (name, shape) in shapes {
            let deepest = (1..200)
                .take_while(|&n| CostExpr::parse(&shape(n)).is_ok())
                .last()
                .unwrap_or(0);
            assert!(deepest >= MAX_DEPTH - 2, "{name}: only {deepest} deep");
            let e = CostExpr::parse(&shape(deepest + 1)).unwrap_err();
            assert!(e.contains("nested more than 64 levels deep"), "{name}: {e}");
            assert!(e.contains("at character"), "{name}: {e}");
            let e = CostExpr::parse(&shape(300_000)).unwrap_err();
            assert!(e.contains("at most 4096"), "{name}: {e}");
        }
        assert_eq!(cost(&shape_sum(60), json!({})), Some(61));
        let wide = format!("max({})", vec!["1"; 1000].join(","));
        assert_eq!(cost(&wide, json!({})), Some(1), "width is not depth");
    }

    fn shape_sum(n: usize) -> String {
        format!("1{}", "+1".repeat(n))
    }

    #[test]
    fn a_wide_usage_object_is_read_once_per_key() {
        let mut usage = serde_json::Map::new();
        for i in 0..50_000 {
            usage.insert(format!("k{i}"), json!(i));
        }
        usage.insert("input_tokens".into(), json!(7));
        assert_eq!(cost("input_tokens + k3", Value::Object(usage)), Some(10));
    }
}
