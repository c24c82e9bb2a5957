//! The goals file (integration-tests/goals.toml) against the benchmarks' figures: what
//! `integration-tests/bench --check` prints and decides (the `bench-goals` binary).

use std::collections::BTreeMap;

use toml_edit::{DocumentMut, Item, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoalsError {
    #[error("goals.toml is not TOML: {0}")]
    Syntax(String),
    #[error("goals.toml has no [[goal]] entries")]
    Empty,
    #[error("goal {index}: {why}")]
    Bad { index: usize, why: String },
}

/// Where a goal's figure is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// By `bench` on this host: the figure must be there.
    Host,
    /// In the full-system guest only: checked when its line is there.
    Guest,
}

/// What a goal is measured by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Figure {
    One(String),
    Difference(String, String),
    Ratio(String, String),
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Figure::One(a) => write!(f, "{a}"),
            Figure::Difference(a, b) => write!(f, "{a} - {b}"),
            Figure::Ratio(a, b) => write!(f, "{a} / {b}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub name: String,
    pub figure: Figure,
    pub max: f64,
    pub unit: String,
    pub place: Place,
}

/// One `BENCH` line's value and unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The figure, in the goal's unit, is at or below the goal.
    Met(f64),
    Missed(f64),
    /// A guest goal whose figure is not among the lines (the guest did not run).
    NotMeasured,
    /// A host goal without its figure, or a figure in a unit the goal's cannot be made from.
    Unmeasurable(String),
}

impl Verdict {
    /// Whether `bench --check` fails on it.
    pub fn fails(&self) -> bool {
        matches!(self, Verdict::Missed(_) | Verdict::Unmeasurable(_))
    }
}

fn parse_figure(text: &str) -> Result<Figure, String> {
    let name = |s: &str| {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            Ok(s.to_owned())
        } else {
            Err(format!("{s:?} is not a BENCH name"))
        }
    };
    if let Some((a, b)) = text.split_once(" - ") {
        Ok(Figure::Difference(name(a)?, name(b)?))
    } else if let Some((a, b)) = text.split_once(" / ") {
        Ok(Figure::Ratio(name(a)?, name(b)?))
    } else {
        Ok(Figure::One(name(text)?))
    }
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Float(f) => Some(*f.value()),
        // Goals are small whole numbers: exact as a float.
        #[allow(clippy::cast_precision_loss)]
        Value::Integer(i) => Some(*i.value() as f64),
        _ => None,
    }
}

/// The goals of goals.toml, in its order.
pub fn parse_goals(text: &str) -> Result<Vec<Goal>, GoalsError> {
    let doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| GoalsError::Syntax(e.to_string()))?;
    let Some(Item::ArrayOfTables(entries)) = doc.get("goal") else {
        return Err(GoalsError::Empty);
    };
    let mut goals = Vec::new();
    for (i, table) in entries.iter().enumerate() {
        let index = i + 1;
        let bad = |why: &str| GoalsError::Bad {
            index,
            why: why.to_owned(),
        };
        let text = |key: &str| table.get(key).and_then(Item::as_str).map(str::to_owned);
        let name = text("name").ok_or_else(|| bad("no name"))?;
        let figure = text("figure").ok_or_else(|| bad("no figure"))?;
        let figure = parse_figure(&figure).map_err(|why| bad(&why))?;
        let max = number(table.get("max").and_then(Item::as_value))
            .filter(|m| m.is_finite())
            .ok_or_else(|| bad("no number for max"))?;
        let unit = text("unit").ok_or_else(|| bad("no unit"))?;
        let place = match text("where").as_deref() {
            None | Some("host") => Place::Host,
            Some("guest") => Place::Guest,
            Some(other) => return Err(bad(&format!("where = {other:?}: host or guest"))),
        };
        goals.push(Goal {
            name,
            figure,
            max,
            unit,
            place,
        });
    }
    if goals.is_empty() {
        return Err(GoalsError::Empty);
    }
    Ok(goals)
}

/// The figures of `BENCH <name> <value> <unit>` lines (anything else is skipped; a name seen
/// twice keeps its last value).
pub fn parse_figures(text: &str) -> BTreeMap<String, Measured> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "BENCH" {
                return None;
            }
            let name = words.next()?.to_owned();
            let value: f64 = words.next()?.parse().ok()?;
            let unit = words.next().unwrap_or("").to_owned();
            value
                .is_finite()
                .then_some((name, Measured { value, unit }))
        })
        .collect()
}

/// How many of the base unit (ns, or bytes) one of `unit` is.
fn scale(unit: &str) -> Option<(&'static str, f64)> {
    Some(match unit {
        "ns" => ("time", 1.0),
        "us" => ("time", 1e3),
        "ms" => ("time", 1e6),
        "s" => ("time", 1e9),
        "B" => ("size", 1.0),
        "KiB" => ("size", 1024.0),
        "MiB" => ("size", 1024.0 * 1024.0),
        "GiB" => ("size", 1024.0 * 1024.0 * 1024.0),
        _ => return None,
    })
}

/// `value` in `from` as `to`; `None` when one cannot be made from the other.
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(value);
    }
    let (kind_from, from_scale) = scale(from)?;
    let (kind_to, to_scale) = scale(to)?;
    (kind_from == kind_to).then(|| value * from_scale / to_scale)
}

fn measure(goal: &Goal, figures: &BTreeMap<String, Measured>) -> Result<Option<f64>, String> {
    let one = |name: &str, unit: &str| -> Result<Option<f64>, String> {
        let Some(m) = figures.get(name) else {
            return Ok(None);
        };
        convert(m.value, &m.unit, unit)
            .map(Some)
            .ok_or_else(|| format!("{name} is in {}, the goal in {unit}", m.unit))
    };
    Ok(match &goal.figure {
        Figure::One(a) => one(a, &goal.unit)?,
        Figure::Difference(a, b) => match (one(a, &goal.unit)?, one(b, &goal.unit)?) {
            (Some(a), Some(b)) => Some(a - b),
            _ => None,
        },
        Figure::Ratio(a, b) => {
            let (Some(ma), Some(mb)) = (figures.get(a), figures.get(b)) else {
                return Ok(None);
            };
            let b = convert(mb.value, &mb.unit, &ma.unit)
                .ok_or_else(|| format!("{a} is in {}, {b} in {}", ma.unit, mb.unit))?;
            (b != 0.0).then(|| ma.value / b)
        }
    })
}

/// Each goal's verdict on `figures`.
pub fn check(goals: &[Goal], figures: &BTreeMap<String, Measured>) -> Vec<Verdict> {
    goals
        .iter()
        .map(|goal| match (measure(goal, figures), goal.place) {
            (Err(why), _) => Verdict::Unmeasurable(why),
            (Ok(Some(v)), _) if v <= goal.max => Verdict::Met(v),
            (Ok(Some(v)), _) => Verdict::Missed(v),
            (Ok(None), Place::Guest) => Verdict::NotMeasured,
            (Ok(None), Place::Host) => {
                Verdict::Unmeasurable(format!("no BENCH line for {}", goal.figure))
            }
        })
        .collect()
}

/// One line per goal: the goal and the figure side by side, and the verdict.
pub fn report(goal: &Goal, verdict: &Verdict) -> String {
    let target = format!("<= {} {}", goal.max, goal.unit);
    let (figure, word) = match verdict {
        Verdict::Met(v) => (format!("{v:.2} {}", goal.unit), "met".to_owned()),
        Verdict::Missed(v) => (format!("{v:.2} {}", goal.unit), "MISSED".to_owned()),
        Verdict::NotMeasured => ("-".to_owned(), "not measured (guest)".to_owned()),
        Verdict::Unmeasurable(why) => ("-".to_owned(), format!("UNMEASURED: {why}")),
    };
    format!(
        "GOAL {:<62} goal {target:<16} figure {figure:<14} {word}",
        goal.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOALS: &str = r#"
[[goal]]
name = "status"
figure = "status_rtt_p99"
max = 1
unit = "ms"

[[goal]]
name = "rss"
figure = "vaultd_idle_rss"
max = 10
unit = "MiB"

[[goal]]
name = "overhead"
figure = "vm_stop_vaultd - vm_stop_by_hand"
max = 500
unit = "ms"
where = "guest"

[[goal]]
name = "ratio"
figure = "vm_unlock_over_by_hand"
max = 1.03
unit = "ratio"
where = "guest"
"#;

    fn figures(lines: &str) -> BTreeMap<String, Measured> {
        parse_figures(lines)
    }

    #[test]
    fn the_goals_file_of_the_repository_reads() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/goals.toml"))
            .expect("goals.toml");
        let goals = parse_goals(&text).expect("parse");
        assert!(goals.len() >= 8);
        assert!(goals.iter().any(|g| g.place == Place::Guest));
    }

    #[test]
    fn figures_in_other_units_are_converted_and_compared_at_or_below() {
        let goals = parse_goals(GOALS).expect("parse");
        let verdicts = check(
            &goals,
            &figures(
                "noise\nBENCH status_rtt_p99 1000.0 us\nBENCH vaultd_idle_rss 10241 KiB\n\
                 BENCH vm_stop_vaultd 2.4 s\nBENCH vm_stop_by_hand 2000 ms\n\
                 BENCH vm_unlock_over_by_hand 1.02 ratio\n",
            ),
        );
        assert_eq!(verdicts[0], Verdict::Met(1.0), "exactly the goal is met");
        assert!(
            matches!(verdicts[1], Verdict::Missed(v) if v > 10.0),
            "{verdicts:?}"
        );
        assert!(matches!(verdicts[2], Verdict::Met(v) if (v - 400.0).abs() < 1e-9));
        assert_eq!(verdicts[3], Verdict::Met(1.02));
        assert!(verdicts[1].fails() && !verdicts[0].fails());
    }

    #[test]
    fn a_missing_guest_figure_is_not_measured_and_a_missing_host_figure_fails() {
        let goals = parse_goals(GOALS).expect("parse");
        let verdicts = check(&goals, &figures("BENCH vaultd_idle_rss 8000 KiB\n"));
        assert!(matches!(verdicts[0], Verdict::Unmeasurable(_)));
        assert!(verdicts[0].fails());
        assert_eq!(verdicts[1], Verdict::Met(8000.0 / 1024.0));
        assert_eq!(verdicts[2], Verdict::NotMeasured);
        assert!(!verdicts[2].fails());
        // Half of a difference is not the difference.
        let verdicts = check(&goals, &figures("BENCH vm_stop_vaultd 2.4 s\n"));
        assert_eq!(verdicts[2], Verdict::NotMeasured);
    }

    #[test]
    fn units_that_cannot_be_converted_fail_rather_than_compare() {
        let goals = parse_goals(GOALS).expect("parse");
        let verdicts = check(&goals, &figures("BENCH status_rtt_p99 3 calls\n"));
        assert!(matches!(&verdicts[0], Verdict::Unmeasurable(why) if why.contains("calls")));
        assert_eq!(convert(1.0, "s", "ms"), Some(1000.0));
        assert_eq!(convert(2048.0, "KiB", "MiB"), Some(2.0));
        assert_eq!(convert(1.0, "ms", "MiB"), None);
        assert_eq!(convert(1.5, "ratio", "ratio"), Some(1.5));
    }

    #[test]
    fn a_ratio_of_two_figures_is_taken_in_one_unit() {
        let goals = parse_goals(
            "[[goal]]\nname = \"r\"\nfigure = \"a / b\"\nmax = 1.03\nunit = \"ratio\"\n",
        )
        .expect("parse");
        let verdicts = check(&goals, &figures("BENCH a 2.06 s\nBENCH b 2000 ms\n"));
        assert!(matches!(verdicts[0], Verdict::Met(v) if (v - 1.03).abs() < 1e-9));
    }

    #[test]
    fn malformed_goals_are_refused_with_their_index() {
        assert_eq!(parse_goals(""), Err(GoalsError::Empty));
        assert!(matches!(
            parse_goals("[[goal]\n"),
            Err(GoalsError::Syntax(_))
        ));
        let no_max = "[[goal]]\nname = \"x\"\nfigure = \"a\"\nunit = \"ms\"\n";
        assert!(matches!(
            parse_goals(no_max),
            Err(GoalsError::Bad { index: 1, .. })
        ));
        let bad_name = "[[goal]]\nname = \"x\"\nfigure = \"a b\"\nmax = 1\nunit = \"ms\"\n";
        assert!(matches!(parse_goals(bad_name), Err(GoalsError::Bad { .. })));
        let bad_place =
            "[[goal]]\nname = \"x\"\nfigure = \"a\"\nmax = 1\nunit = \"ms\"\nwhere = \"moon\"\n";
        assert!(matches!(
            parse_goals(bad_place),
            Err(GoalsError::Bad { .. })
        ));
    }

    #[test]
    fn the_report_puts_goal_and_figure_side_by_side() {
        let goals = parse_goals(GOALS).expect("parse");
        let line = report(&goals[1], &Verdict::Missed(12.5));
        assert!(
            line.contains("<= 10 MiB") && line.contains("12.50 MiB") && line.contains("MISSED")
        );
        assert!(report(&goals[3], &Verdict::NotMeasured).contains("not measured"));
    }
}
