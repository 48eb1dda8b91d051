//! The report's model: one [`Row`] per measured comparison, the [`Phase`] it was measured in,
//! and its [`Goal`]. No I/O here: [`crate::report`] writes rows out, [`crate::chart`] draws them.

/// When a row was measured: on a quiet cluster, or while churn flows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Nothing changes upstream but the scenarios' own probes.
    Quiet,
    /// Churn flows (see [`crate::churn`]).
    Churn,
}

impl Phase {
    /// As the report and the log files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Quiet => "quiet",
            Phase::Churn => "churn",
        }
    }
}

/// One measured comparison.
pub struct Row {
    /// When it was measured.
    pub phase: Phase,
    /// The numbered scenario and what it compares, as the report prints it.
    pub scenario: String,
    /// vai's figure, in `unit`.
    pub vai: f64,
    /// The baseline's figure, in `unit`.
    pub baseline: f64,
    /// What the baseline is.
    pub baseline_name: &'static str,
    /// The unit of both figures.
    pub unit: &'static str,
    /// What vai should achieve.
    pub goal: Goal,
}

/// A row's goal.
#[derive(Clone, Copy)]
pub enum Goal {
    /// None set.
    None,
    /// vai / baseline at most this; how the goal reads.
    Ratio(f64, &'static str),
    /// vai's own figure at most this (in the row's unit); how the goal reads.
    Max(f64, &'static str),
    /// A goal that is not a number to check here.
    Note(&'static str),
}

impl Goal {
    /// How the goal reads in the report (empty for none).
    pub fn text(self) -> &'static str {
        match self {
            Goal::None => "",
            Goal::Ratio(_, text) | Goal::Max(_, text) | Goal::Note(text) => text,
        }
    }
}

impl Row {
    /// vai / baseline.
    pub fn ratio(&self) -> f64 {
        self.vai / self.baseline
    }

    /// Whether the row meets its goal, where it has one that is a number.
    pub fn met(&self) -> Option<bool> {
        match self.goal {
            Goal::Ratio(goal, _) => Some(self.ratio() <= goal),
            Goal::Max(goal, _) => Some(self.vai <= goal),
            Goal::None | Goal::Note(_) => None,
        }
    }

    /// The bound on vai / baseline, to draw.
    pub fn goal_ratio(&self) -> Option<f64> {
        match self.goal {
            Goal::Ratio(goal, _) => Some(goal),
            _ => None,
        }
    }
}
