//! Credentials never land: the fields named in `batch.redact_fields` (FakeStore's `/users`
//! carries plaintext passwords) are removed from a response at extraction, before the spool and
//! RAW. RAW is "as received, minus credentials": a response without such a field keeps its bytes;
//! one with them is written back as compact JSON (keys sorted), the same bytes for the same
//! response, so duplicate detection and replay work on the redacted form.

use serde_json::Value;

/// The response without the named fields, at any depth.
pub fn redact(body: &[u8], fields: &[String]) -> Vec<u8> {
    if fields.is_empty() || !fields.iter().any(|f| contains(body, f)) {
        return body.to_vec();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            strip(&mut v, fields);
            serde_json::to_vec(&v).unwrap_or_default()
        }
        // Not JSON (it will be quarantined as such): blank the values textually, so even a
        // malformed body never carries the secret on.
        Err(_) => blank(body, fields),
    }
}

fn contains(body: &[u8], field: &str) -> bool {
    let needle = format!("\"{field}\"");
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn strip(v: &mut Value, fields: &[String]) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !fields.contains(k));
            map.values_mut().for_each(|x| strip(x, fields));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| strip(x, fields)),
        _ => {}
    }
}

/// `"field" : "value"` becomes `"field":null`, for every occurrence of every field.
fn blank(body: &[u8], fields: &[String]) -> Vec<u8> {
    let mut out = body.to_vec();
    for field in fields {
        let needle = format!("\"{field}\"");
        let mut from = 0;
        while let Some(at) = find(&out[from..], needle.as_bytes()).map(|i| i + from) {
            let mut i = at + needle.len();
            while i < out.len() && out[i].is_ascii_whitespace() {
                i += 1;
            }
            if out.get(i) != Some(&b':') {
                from = at + needle.len();
                continue;
            }
            i += 1;
            while i < out.len() && out[i].is_ascii_whitespace() {
                i += 1;
            }
            if out.get(i) != Some(&b'"') {
                from = i.min(out.len());
                continue;
            }
            // The string's end: the next quote not escaped (or the end of a cut body).
            let mut j = i + 1;
            while j < out.len() && out[j] != b'"' {
                j += if out[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(out.len());
            out.splice(i..end, b"null".iter().copied());
            from = i + 4;
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Vec<String> {
        vec!["password".into()]
    }

    #[test]
    fn removes_the_field_at_any_depth_and_keeps_the_rest() {
        let body = br#"[{"id":1,"password":"hunter2","name":{"firstname":"a"}},{"id":2,"nested":[{"password":"x\"y"}]}]"#;
        let out = redact(body, &f());
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("password"),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["name"]["firstname"], "a");
        assert_eq!(v[1]["nested"][0], serde_json::json!({}));
        assert_eq!(redact(body, &f()), out, "the same bytes every time");
    }

    #[test]
    fn a_response_without_credentials_keeps_its_bytes() {
        let body = b"[ {\"id\": 1,   \"title\": \"x\"} ]";
        assert_eq!(redact(body, &f()), body.to_vec());
        assert_eq!(redact(body, &[]), body.to_vec());
    }

    #[test]
    fn a_malformed_body_loses_the_values_too() {
        let body = br#"[{"id":1, "password" : "hun\"ter2", "x":1},{"password":"cut-sho"#;
        let text = String::from_utf8(redact(body, &f())).unwrap();
        assert!(!text.contains("hun") && !text.contains("cut-sho"), "{text}");
        assert!(text.contains(r#""password" : null"#), "{text}");
    }
}
