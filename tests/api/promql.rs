//! Just enough PromQL and rule-file reading to find the metric names a dashboard or an alert
//! rule queries, so a test can check them against a scrape.

/// Words of PromQL that are not metric names where a name could stand: operators, and the
/// aggregations (which may take `by (...)` before their parenthesis).
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names `expr` selects: identifiers outside label matchers (`{...}`), ranges
/// (`[...]`), strings and label lists, that are not functions, aggregations or keywords.
pub fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '{' | '[' | '"' | '\'' | '`') {
            i = skip_enclosed(&chars, i);
            continue;
        }
        if c == '(' && skip_list {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_list = false;
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            // A number (or a duration such as 5m), including any letters it carries.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if LABEL_LISTS.contains(&word.as_str()) {
                // `group_left` may stand without a list.
                skip_list = next == Some(&'(');
            } else if next != Some(&'(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.push(word);
            }
            continue;
        }
        i += 1;
    }
    names
}

/// The index after the matcher list, range, or string opening at `open`; strings inside a
/// matcher list may hold its closing brace.
fn skip_enclosed(chars: &[char], open: usize) -> usize {
    let close = match chars[open] {
        '{' => '}',
        '[' => ']',
        quote => quote,
    };
    let in_string = close == chars[open] && close != ']';
    let mut i = open + 1;
    while i < chars.len() && chars[i] != close {
        i = match chars[i] {
            '\\' if in_string => i + 2,
            '"' | '\'' | '`' if !in_string => skip_enclosed(chars, i),
            _ => i + 1,
        };
    }
    i + 1
}

/// The `expr` of every rule in a Prometheus rule file, inline or as a `>-`/`|` block.
pub fn rule_exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if !value.starts_with(['>', '|']) {
            exprs.push(value.trim_matches(['"', '\'']).to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" ").trim().to_owned());
    }
    exprs
}

#[test]
fn metric_names_skip_functions_labels_ranges_and_keywords() {
    let expr = r#"histogram_quantile(0.95, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{instance=~"$instance",x="a}b"}[$__rate_interval])))
        / on (instance) group_left max(chronicle_build_info) > bool 1e3 unless foo:bar offset 5m"#;

    assert_eq!(
        metric_names(expr),
        [
            "http_server_request_duration_seconds_bucket",
            "chronicle_build_info",
            "foo:bar"
        ]
    );
}

#[test]
fn rule_exprs_read_inline_and_block_expressions() {
    let rules = "groups:\n  - rules:\n      - alert: A\n        expr: up == 0\n        for: 1m\n      - alert: B\n        expr: >-\n          a > 1\n          and b\n        labels: {}\n";

    assert_eq!(rule_exprs(rules), ["up == 0", "a > 1 and b"]);
}
