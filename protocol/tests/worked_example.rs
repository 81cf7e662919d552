//! Appendix A of docs/PROTOCOL.md cannot go stale: every value `worked_example` computes
//! (`worked_example/values.rs`) must be in it, every code block and every long hex string
//! in it must be one the example computes, and the §5 JSON examples that say they show
//! Appendix A's values must be the messages the example builds.

#[path = "worked_example/values.rs"]
mod values;

use std::path::Path;
use values::{compute, Item};

fn protocol_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of Appendix A: from its heading up to Appendix B's.
fn appendix_a(doc: &str) -> &str {
    let start = doc
        .find("\n## Appendix A.")
        .expect("PROTOCOL.md has an Appendix A");
    let end = doc[start..]
        .find("\n## Appendix B")
        .map_or(doc.len(), |e| start + e);
    &doc[start..end]
}

/// The fenced code blocks of `text`: the word after the opening fence, and the lines
/// (without trailing spaces).
fn code_blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => open = Some((lang.trim().to_string(), Vec::new())),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some((_, lines)), None) => lines.push(line.trim_end().to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a code block is not closed");
    blocks
}

/// Maximal runs of lowercase hex digits of at least 16 characters with a letter among
/// them: digests, keys, signatures, bytes (not decimal numbers).
fn hex_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !matches!(c, '0'..='9' | 'a'..='f'))
        .filter(|r| r.len() >= 16 && r.bytes().any(|b| b.is_ascii_alphabetic()))
        .collect()
}

/// Everything the example prints as values and block lines, one per line.
fn computed_text(items: &[Item]) -> String {
    let mut all = String::new();
    for item in items {
        match item {
            Item::Value { text, .. } => all.push_str(text),
            Item::Block { lines, .. } => all.push_str(&lines.join("\n")),
            Item::Json { pretty, .. } => all.push_str(pretty),
            Item::Heading(_) => {}
        }
        all.push('\n');
    }
    all
}

/// `text` with every run of white space one space (prose is reflowed freely).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn appendix_a_shows_every_computed_value() {
    let doc = protocol_md();
    let appendix = appendix_a(&doc);
    let prose = one_line(appendix);
    let blocks = code_blocks(appendix);
    let mut missing = Vec::new();
    for item in compute().items {
        match item {
            Item::Value { label, text } if !prose.contains(&one_line(&text)) => {
                missing.push(format!("{label}: {text}"));
            }
            Item::Block { label, lines } if !blocks.iter().any(|(_, b)| *b == lines) => {
                missing.push(format!("{label}:\n{}", lines.join("\n")));
            }
            _ => {}
        }
    }
    assert!(
        missing.is_empty(),
        "Appendix A lacks these values (cargo run -p tessera-protocol --example \
         worked_example prints them all):\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_code_block_of_appendix_a_is_computed() {
    let doc = protocol_md();
    let items = compute().items;
    let computed: Vec<&Vec<String>> = items
        .iter()
        .filter_map(|i| match i {
            Item::Block { lines, .. } => Some(lines),
            _ => None,
        })
        .collect();
    let stray: Vec<String> = code_blocks(appendix_a(&doc))
        .into_iter()
        .filter(|(_, lines)| !computed.contains(&lines))
        .map(|(_, lines)| lines.join("\n"))
        .collect();
    assert!(
        stray.is_empty(),
        "code blocks of Appendix A that the example does not print:\n{}",
        stray.join("\n---\n")
    );
}

#[test]
fn every_hex_string_of_appendix_a_is_computed() {
    let doc = protocol_md();
    let all = computed_text(&compute().items);
    let stray: Vec<&str> = hex_runs(appendix_a(&doc))
        .into_iter()
        .filter(|run| !all.contains(run))
        .collect();
    assert!(
        stray.is_empty(),
        "hex strings in Appendix A that the example does not compute:\n{}",
        stray.join("\n")
    );
}

/// Where `doc` (a document's example) differs from `computed`, by JSON path; a string of
/// the document that ends in `…` stands for any string that begins with the rest.
fn json_differences(
    path: &str,
    doc: &serde_json::Value,
    computed: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (doc, computed) {
        (Value::Object(d), Value::Object(c)) => {
            for k in d.keys().filter(|k| !c.contains_key(*k)) {
                out.push(format!("{path}.{k}: not in the message"));
            }
            for (k, cv) in c {
                match d.get(k) {
                    Some(dv) => json_differences(&format!("{path}.{k}"), dv, cv, out),
                    None => out.push(format!("{path}.{k}: missing, the message has {cv}")),
                }
            }
        }
        (Value::Array(d), Value::Array(c)) if d.len() == c.len() => {
            for (i, (dv, cv)) in d.iter().zip(c).enumerate() {
                json_differences(&format!("{path}[{i}]"), dv, cv, out);
            }
        }
        (Value::String(d), Value::String(c)) => {
            let same = match d.strip_suffix('…') {
                Some(start) => !start.is_empty() && c.starts_with(start),
                None => d == c,
            };
            if !same {
                out.push(format!("{path}: {d:?}, the message has {c:?}"));
            }
        }
        (d, c) if d == c => {}
        (d, c) => out.push(format!("{path}: {d}, the message has {c}")),
    }
}

/// The first ```json block after the heading that starts with `section`, before the next
/// heading.
fn json_example(doc: &str, section: &str) -> serde_json::Value {
    let start = doc
        .find(&format!("\n{section}"))
        .unwrap_or_else(|| panic!("PROTOCOL.md has no heading {section:?}"));
    let body = &doc[start + 1..];
    let end = body[1..].find("\n#").map_or(body.len(), |e| e + 1);
    let (_, lines) = code_blocks(&body[..end])
        .into_iter()
        .find(|(lang, _)| lang == "json")
        .unwrap_or_else(|| panic!("{section:?} has no JSON example"));
    serde_json::from_str(&lines.join("\n"))
        .unwrap_or_else(|e| panic!("the JSON example of {section:?} does not parse: {e}"))
}

#[test]
fn the_json_examples_citing_appendix_a_are_its_messages() {
    let doc = protocol_md();
    let mut differences = Vec::new();
    for item in compute().items {
        if let Item::Json {
            label,
            section,
            pretty,
        } = item
        {
            let message = serde_json::from_str(&pretty).expect("serde_json reads its own output");
            json_differences(
                &format!("{label} ({})", section.trim()),
                &json_example(&doc, &section),
                &message,
                &mut differences,
            );
        }
    }
    assert!(
        differences.is_empty(),
        "the JSON examples differ from the messages of Appendix A:\n{}",
        differences.join("\n")
    );
}
