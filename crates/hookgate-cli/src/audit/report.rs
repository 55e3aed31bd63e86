//! The audit as text (the terminal), Markdown (a review) and JSON (a pipeline).

use super::{Audit, Verdict};

/// The closing line's counts.
fn counts(audit: &Audit) -> String {
    format!(
        "{} passed, {} failed, {} warning(s), {} unknown, {} not applicable",
        audit.count(Verdict::Pass),
        audit.count(Verdict::Fail),
        audit.count(Verdict::Warn),
        audit.count(Verdict::Unknown),
        audit.count(Verdict::NotApplicable),
    )
}

fn overall(audit: &Audit) -> &'static str {
    if audit.failed() { "FAIL" } else { "PASS" }
}

/// For the terminal: one block per check.
pub(super) fn text(audit: &Audit) -> String {
    let mut out = format!(
        "hookgate audit of {} (scheme {})\n\n",
        audit.url, audit.scheme
    );
    for check in &audit.checks {
        out.push_str(&format!("{:<7} {}\n", check.verdict.label(), check.title));
        out.push_str(&format!("        expected: {}\n", check.expected));
        out.push_str(&format!("        observed: {}\n", check.observed));
        if let Some(note) = &check.note {
            out.push_str(&format!("        note: {note}\n"));
        }
        out.push_str(&format!("        why: {}\n", check.why));
    }
    out.push_str(&format!("\n{}: {}\n", overall(audit), counts(audit)));
    out
}

/// For a review: a summary table, the details, and what to check on the receiver.
pub(super) fn markdown(audit: &Audit) -> String {
    let mut out = String::from("# Webhook receiver audit\n\n");
    out.push_str(&format!("- Endpoint: `{}`\n", cell(&audit.url)));
    out.push_str(&format!("- Scheme: `{}`\n", audit.scheme));
    out.push_str(&format!(
        "- Run: {} with {}\n",
        audit.started_at, audit.tool
    ));
    out.push_str(&format!(
        "- Result: **{}** — {}\n\n",
        overall(audit),
        counts(audit)
    ));
    out.push_str("| # | Check | Result | Expected | Observed |\n|---|---|---|---|---|\n");
    for (n, check) in (1..).zip(&audit.checks) {
        out.push_str(&format!(
            "| {n} | {} | **{}** | {} | {} |\n",
            cell(check.title),
            check.verdict.label(),
            cell(&check.expected),
            cell(&check.observed)
        ));
    }
    out.push_str("\n## Details\n");
    for (n, check) in (1..).zip(&audit.checks) {
        out.push_str(&format!(
            "\n### {n}. {} — {}\n\n",
            check.title,
            check.verdict.label()
        ));
        out.push_str(&format!("- Expected: {}\n", check.expected));
        out.push_str(&format!("- Observed: {}\n", check.observed));
        if let Some(note) = &check.note {
            out.push_str(&format!("- Note: {note}\n"));
        }
        out.push_str(&format!("- Why it matters: {}\n", check.why));
    }
    let open: Vec<_> = audit
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Unknown)
        .collect();
    if !open.is_empty() {
        out.push_str("\n## To check on the receiver's side\n\n");
        out.push_str(
            "An outside observer cannot tell these apart from correct behaviour; the \
             reviewer should confirm them in the receiver's logs or data:\n\n",
        );
        for check in open {
            out.push_str(&format!(
                "- **{}**: {}\n",
                check.title,
                check.note.as_deref().unwrap_or("")
            ));
        }
    }
    out
}

/// For a pipeline: the whole audit as one JSON object.
pub(super) fn json(audit: &Audit) -> String {
    let mut value = serde_json::to_value(audit).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("result".to_owned(), overall(audit).into());
        object.insert(
            "summary".to_owned(),
            serde_json::json!({
                "passed": audit.count(Verdict::Pass),
                "failed": audit.count(Verdict::Fail),
                "warnings": audit.count(Verdict::Warn),
                "unknown": audit.count(Verdict::Unknown),
                "not_applicable": audit.count(Verdict::NotApplicable),
            }),
        );
    }
    let mut text = value.to_string();
    text.push('\n');
    text
}

/// Text safe in a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::super::Check;
    use super::*;

    fn audit(verdict: Verdict) -> Audit {
        Audit {
            url: "http://x/h".to_owned(),
            scheme: "github",
            started_at: "2024-01-01T00:00:00Z".to_owned(),
            tool: "hookgate test",
            checks: vec![Check {
                id: "replay",
                title: "exact replay",
                verdict,
                expected: "2xx | once".to_owned(),
                observed: "200 ok".to_owned(),
                why: "because",
                note: Some("look at the logs".to_owned()),
            }],
        }
    }

    #[test]
    fn markdown_escapes_cells_and_lists_what_to_check() {
        let md = markdown(&audit(Verdict::Unknown));
        assert!(md.contains("2xx \\| once"), "{md}");
        assert!(md.contains("## To check on the receiver's side"), "{md}");
        assert!(md.contains("**PASS**"), "{md}");
        let md = markdown(&audit(Verdict::Fail));
        assert!(md.contains("**FAIL**"), "{md}");
        assert!(!md.contains("To check on the receiver"), "{md}");
    }

    #[test]
    fn json_has_a_result_and_a_summary() {
        let value: serde_json::Value = serde_json::from_str(&json(&audit(Verdict::Fail))).unwrap();
        assert_eq!(value["result"], "FAIL");
        assert_eq!(value["summary"]["failed"], 1);
        assert_eq!(value["checks"][0]["verdict"], "fail");
    }
}
