//! What the client commands print without `--json`: a job's status line (and the list of
//! them), the nodes and ledger tables, written to any [`Write`], and a credit's answer.

use crate::commands::{account_kind, kind_total};
use crate::{CreditResponse, JobStatus, LedgerView, NodeView};
use std::io::{self, Write};

/// One job's status on one line (`tessera status`, `tessera dispute`).
pub fn status_line(s: &JobStatus) -> String {
    let mut line = format!(
        "{}  {:<9}  {}  frames {}..{}  tier {}  rendered {}/{}  verified {}/{}  round {}",
        s.job_id,
        s.state,
        s.scene_name,
        s.frame_start,
        s.frame_end,
        s.tier,
        s.tiles_rendered,
        s.tiles_total,
        s.tiles_verified,
        s.tiles_total,
        s.round
    );
    if let Some(e) = &s.error {
        line.push_str(&format!("  error: {e}"));
    }
    line
}

/// Every job's status line (`tessera status` without a job), or `no jobs`.
pub fn write_jobs(w: &mut impl Write, jobs: &[JobStatus]) -> io::Result<()> {
    if jobs.is_empty() {
        return writeln!(w, "no jobs");
    }
    for s in jobs {
        writeln!(w, "{}", status_line(s))?;
    }
    Ok(())
}

/// What `tessera credit` says of `answer` to its request of `amount` under `reference`.
pub fn credit_line(amount: u64, reference: &str, answer: &CreditResponse) -> String {
    if answer.applied {
        format!(
            "credited {amount} µcr to {}: balance {} µcr",
            answer.account, answer.balance
        )
    } else {
        format!(
            "reference {reference:?} was credited before: nothing credited; {} holds {} µcr",
            answer.account, answer.balance
        )
    }
}

/// Write rows as columns under `header`, left-aligned except the `right` ones (the last
/// column is not padded when left-aligned).
pub fn write_table(
    w: &mut impl Write,
    header: &[&str],
    right: &[usize],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let n = cells.len();
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if right.contains(&i) {
                s.push_str(&format!("{c:>w$}  "));
            } else if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    writeln!(w, "{}", line(&header))?;
    for r in rows {
        writeln!(w, "{}", line(r))?;
    }
    Ok(())
}

/// The registered workers as JSON, each with its determinism class id (hex) added.
pub fn nodes_json(nodes: &[NodeView]) -> serde_json::Value {
    let v = nodes
        .iter()
        .map(|n| {
            let mut v = serde_json::to_value(n).unwrap_or_default();
            v["class_id"] = hex::encode(n.class.id()).into();
            v
        })
        .collect();
    serde_json::Value::Array(v)
}

/// The registered workers as a table (`tessera nodes`), their last contact counted
/// back from `now_unix`.
pub fn write_nodes(w: &mut impl Write, nodes: &[NodeView], now_unix: u64) -> io::Result<()> {
    if nodes.is_empty() {
        return writeln!(w, "no nodes registered");
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.role.clone(),
                n.key.short(),
                n.slots.to_string(),
                n.leased_tasks.to_string(),
                n.trust.to_string(),
                n.stake.to_string(),
                n.balance.to_string(),
                format!("{}s ago", now_unix.saturating_sub(n.last_seen_unix)),
                format!("{} [{}]", n.class.adapter, hex::encode(&n.class.id()[..6])),
            ]
        })
        .collect();
    let header = [
        "NAME", "ROLE", "KEY", "SLOTS", "LEASED", "TRUST", "STAKE", "BALANCE", "SEEN", "CLASS",
    ];
    write_table(w, &header, &[3, 4, 5, 6, 7], &rows)
}

/// The ledger as a table of accounts, the totals by kind and the sum (`tessera ledger`).
pub fn write_ledger(w: &mut impl Write, ledger: &LedgerView) -> io::Result<()> {
    let rows: Vec<Vec<String>> = ledger
        .accounts
        .iter()
        .map(|a| {
            vec![
                account_kind(&a.account).into(),
                a.account.clone(),
                a.balance.to_string(),
            ]
        })
        .collect();
    write_table(w, &["KIND", "ACCOUNT", "BALANCE (µcr)"], &[2], &rows)?;
    for kind in ["escrow", "stake", "hold-back", "dispute"] {
        let total = kind_total(ledger, kind);
        writeln!(w, "{kind:<9} {total} µcr in all")?;
    }
    writeln!(w, "total {} µcr (always 0: double-entry)", ledger.total)
}

/// One job's line after a control action: `JOB  cancel: cancelled` or
/// `JOB  cancel refused: why`.
pub fn control_line(action: &str, o: &crate::ControlOutcome) -> String {
    match (&o.state, &o.error) {
        (_, Some(why)) => format!("{}  {action} refused: {why}", o.job_id),
        (Some(state), None) => format!("{}  {action}: {state}", o.job_id),
        (None, None) => format!("{}  {action}: no answer", o.job_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![vec!["a".to_string(), "12345".into(), "x".into()]];
        write_table(&mut out, &["NAME", "N", "LAST"], &[1], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME      N  LAST\na     12345  x\n"
        );
    }

    #[test]
    fn a_credit_says_whether_it_was_applied() {
        let mut answer = CreditResponse {
            account: "client:acme".into(),
            applied: true,
            balance: 500,
        };
        assert_eq!(
            credit_line(200, "r1", &answer),
            "credited 200 µcr to client:acme: balance 500 µcr"
        );
        answer.applied = false;
        assert_eq!(
            credit_line(200, "r1", &answer),
            "reference \"r1\" was credited before: nothing credited; client:acme holds 500 µcr"
        );
    }

    #[test]
    fn no_jobs_is_said() {
        let mut out = Vec::new();
        write_jobs(&mut out, &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no jobs\n");
    }
}
