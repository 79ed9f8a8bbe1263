//! `${VAR}` interpolation from the environment, in ringway's spelling and
//! APISIX's.
//!
//! Applied to every string scalar of the parsed document (never to raw text,
//! so a value cannot inject YAML structure). `${VAR:=default}` supplies a
//! default; `$${` escapes a literal `${`. APISIX's own spelling (its
//! `apisix/cli/file.lua`, chosen because nginx owns `${var}`) is read too:
//! `${{VAR}}` and `${{VAR:=default}}`, with spaces allowed inside the braces
//! and around the default (`${{ VAR := x }}`); as in APISIX there is no
//! escape for it, so `$${{VAR}}` is a `$` before the value. A string that is
//! exactly one placeholder (either spelling) whose value looks like a number
//! or boolean becomes that number or boolean, so `port: ${PORT}` works as it
//! does in APISIX. A missing variable is an error naming the variable and
//! the field.

use serde_json::Value;

use super::error::{ConfigError, FieldPath};

/// Replaces placeholders throughout `value` using `lookup`.
pub fn interpolate(
    value: &mut Value,
    at: &FieldPath,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => {
            if !s.contains('$') {
                return Ok(());
            }
            let whole_placeholder = is_single_placeholder(s);
            let replaced = substitute(s, lookup).map_err(|reason| at.error(reason))?;
            *value = if whole_placeholder {
                typed_scalar(replaced)
            } else {
                Value::String(replaced)
            };
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &at.index(i), lookup)?;
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                interpolate(v, &at.field(k), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The process environment as a lookup.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn is_single_placeholder(s: &str) -> bool {
    if let Some(inner) = s.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
        return !inner.contains("}}");
    }
    s.starts_with("${") && s.ends_with('}') && s[2..].find('}') == Some(s.len() - 3)
}

fn typed_scalar(s: String) -> Value {
    if let Ok(n) = s.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(f) = s.parse::<f64>() {
        if f.is_finite() && s.contains('.') {
            return Value::from(f);
        }
    }
    match s.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(s),
    }
}

fn substitute(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("${{") {
            let end = after
                .find("}}")
                .ok_or_else(|| "unterminated ${{ placeholder".to_owned())?;
            let inner = after[..end].trim();
            let (name, default) = match inner.split_once(":=") {
                Some((n, d)) => (n.trim_end(), Some(d.trim())),
                None => (inner, None),
            };
            out.push_str(&resolve(name, default, lookup)?);
            rest = &after[end + 2..];
        } else if tail.starts_with("$${{") {
            // APISIX has no escape for `${{`: the `$` is kept as written.
            out.push('$');
            rest = &tail[1..];
        } else if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${ placeholder".to_owned())?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":=") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            out.push_str(&resolve(name, default, lookup)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of variable `name`, else `default`.
fn resolve(
    name: &str,
    default: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("invalid environment variable name `{name}`"));
    }
    lookup(name)
        .or_else(|| default.map(str::to_owned))
        .ok_or_else(|| format!("environment variable `{name}` is not set"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("sk-123".into()),
            "PORT" => Some("8080".into()),
            "ON" => Some("true".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_inside_strings_and_types_whole_placeholders() {
        let mut v = json!({"auth": "Bearer ${KEY}", "port": "${PORT}", "tls": "${ON}", "d": "${NOPE:=x}", "lit": "$${KEY} and $5"});
        interpolate(&mut v, &FieldPath::root(), &env).unwrap();
        assert_eq!(
            v,
            json!({"auth": "Bearer sk-123", "port": 8080, "tls": true, "d": "x", "lit": "${KEY} and $5"})
        );
    }

    #[test]
    fn missing_variable_names_variable_and_field() {
        let mut v = json!({"services": [{"plugins": {"k": "${MISSING_VAR}"}}]});
        let err = interpolate(&mut v, &FieldPath::root(), &env).unwrap_err();
        assert_eq!(err.path, "services[0].plugins.k");
        assert!(err.reason.contains("MISSING_VAR"), "{}", err.reason);
    }

    #[test]
    fn apisix_double_brace_spelling() {
        let mut v = json!({
            "a": "Bearer ${{KEY}}", "port": "${{ PORT }}", "d": "${{NOPE:= x y }}",
            "empty": "${{NOPE:=}}", "both": "${KEY}/${{KEY}}", "dollar": "$${{KEY}}",
            "lit": "$${KEY}", "typed_default": "${{NOPE:=7}}",
        });
        interpolate(&mut v, &FieldPath::root(), &env).unwrap();
        assert_eq!(
            v,
            json!({
                "a": "Bearer sk-123", "port": 8080, "d": "x y", "empty": "",
                "both": "sk-123/sk-123", "dollar": "$sk-123", "lit": "${KEY}",
                "typed_default": 7,
            })
        );
        for (bad, why) in [
            ("${{MISSING_VAR}}", "`MISSING_VAR` is not set"),
            ("${{KEY}", "unterminated ${{"),
            ("${{A B}}", "invalid environment variable name `A B`"),
            ("${{VAR:-x}}", "invalid environment variable name `VAR:-x`"),
        ] {
            let mut v = json!({"k": bad});
            let err = interpolate(&mut v, &FieldPath::root(), &env).unwrap_err();
            assert!(err.reason.contains(why), "{bad}: {}", err.reason);
        }
    }
}
