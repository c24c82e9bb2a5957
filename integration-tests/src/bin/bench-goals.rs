//! Checks the benchmarks' figures against integration-tests/goals.toml: reads `BENCH` lines on
//! stdin (what `integration-tests/bench` prints), prints one line per goal with the goal and the
//! figure side by side, and exits 1 when a figure misses its goal or a host figure is missing
//! (a guest goal whose figure is absent is reported as not measured). `bench --check` runs it.
//!
//! Usage: bench-goals [GOALS.toml] < figures

use std::io::Read;
use std::process::ExitCode;

use vault_integration_tests::goals;

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/goals.toml").to_owned());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("bench-goals: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let goals = match goals::parse_goals(&text) {
        Ok(goals) => goals,
        Err(e) => {
            eprintln!("bench-goals: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("bench-goals: cannot read the figures: {e}");
        return ExitCode::from(2);
    }
    let verdicts = goals::check(&goals, &goals::parse_figures(&input));
    for (goal, verdict) in goals.iter().zip(&verdicts) {
        println!("{}", goals::report(goal, verdict));
    }
    let count = |f: fn(&goals::Verdict) -> bool| verdicts.iter().filter(|v| f(v)).count();
    let met = count(|v| matches!(v, goals::Verdict::Met(_)));
    let missed = count(|v| matches!(v, goals::Verdict::Missed(_)));
    let unmeasured = count(|v| matches!(v, goals::Verdict::Unmeasurable(_)));
    let guest = count(|v| matches!(v, goals::Verdict::NotMeasured));
    println!(
        "GOALS {met} met, {missed} missed, {unmeasured} without a figure, {guest} not measured (guest)"
    );
    let failed = missed + unmeasured;
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
