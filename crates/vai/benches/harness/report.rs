//! The report of a run: the markdown table printed and written to `report.md`, the rows as
//! `report.json`, and the charts beside them (see [`crate::chart`]).

use std::path::Path;

use serde_json::json;

use crate::chart;
use crate::churn;
use crate::row::{Phase, Row};

/// The markdown table: one line per comparison, the quiet and the churn phase side by side.
fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | baseline | quiet: vai | baseline | vai / baseline | churn: vai | baseline | vai / baseline | goal |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let cells = |r: Option<&Row>| match r {
        Some(r) => format!(
            "{:.1} {u} | {:.1} {u} | {}{}",
            r.vai,
            r.baseline,
            match r.ratio() {
                ratio if ratio.is_finite() => format!("{ratio:.3}"),
                _ => "–".into(),
            },
            match r.met() {
                Some(true) => " (met)",
                Some(false) => " (**miss**)",
                None => "",
            },
            u = r.unit
        ),
        None => " | | ".into(),
    };
    let quiet: Vec<&Row> = rows.iter().filter(|r| r.phase == Phase::Quiet).collect();
    let churn: Vec<&Row> = rows.iter().filter(|r| r.phase == Phase::Churn).collect();
    // The same comparison in both phases is the same scenario at the same place among the
    // rows of that scenario (scenarios run in order); a scenario of one phase only (the access
    // cost, the soak) has a line of its own.
    let number = |r: &Row| r.scenario.split('.').next().unwrap_or_default().to_string();
    let (mut i, mut j) = (0, 0);
    while i < quiet.len() || j < churn.len() {
        let (q, c) = match (quiet.get(i), churn.get(j)) {
            (Some(q), Some(c)) if number(q) == number(c) => (Some(*q), Some(*c)),
            (Some(q), Some(c)) if churn[j..].iter().any(|r| number(r) == number(q)) => {
                (None, Some(*c))
            }
            (q, c) => match q {
                Some(q) => (Some(*q), None),
                None => (None, c.copied()),
            },
        };
        i += usize::from(q.is_some());
        j += usize::from(c.is_some());
        let named = q.or(c).expect("one of the two");
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            named.scenario,
            named.baseline_name,
            cells(q),
            cells(c),
            named.goal.text()
        );
    }
    out
}

/// Prints the table and writes `report.json`, `report.md` and the charts into `out`.
pub fn write(rows: &[Row], pods: u64, churn: Option<&churn::Stats>, out: &Path) {
    let table = markdown(rows);
    let churn_line = churn.map_or("churn: not run".to_string(), |c| {
        format!(
            "churn: {:.0} changes/s accepted over {:.0} s ({} done, {} failed, {} skipped while {} were in flight)",
            c.rate(),
            c.seconds,
            c.done,
            c.failed,
            c.skipped,
            churn::IN_FLIGHT
        )
    });
    println!("\n{table}\n{churn_line}");
    let json_rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "phase": r.phase.name(), "scenario": r.scenario, "vai": r.vai, "baseline": r.baseline,
                "baseline_name": r.baseline_name, "unit": r.unit, "ratio": r.ratio(),
                "goal": r.goal.text(), "met": r.met(),
            })
        })
        .collect();
    let churn_json = churn.map(|c| {
        json!({"rate": c.rate(), "seconds": c.seconds, "done": c.done, "failed": c.failed, "skipped": c.skipped})
    });
    std::fs::create_dir_all(out).unwrap();
    let report = json!({"pods": pods, "churn": churn_json, "rows": json_rows});
    std::fs::write(
        out.join("report.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("report.md"), format!("{table}\n{churn_line}\n")).unwrap();
    match chart::draw(rows, out) {
        Ok(files) => {
            for f in files {
                println!("chart: {}", f.display());
            }
        }
        Err(e) => println!("charts not drawn: {e}"),
    }
    println!("report: {}", out.join("report.json").display());
}
