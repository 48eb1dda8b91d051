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
    let quiet = rows.iter().filter(|r| r.phase == Phase::Quiet);
    for (k, q) in quiet.enumerate() {
        // The same comparison in the churn phase is the kth churn row (scenarios run in order).
        let c = rows.iter().filter(|r| r.phase == Phase::Churn).nth(k);
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            q.scenario,
            q.baseline_name,
            cells(Some(q)),
            cells(c),
            q.goal.text()
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
