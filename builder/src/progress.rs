//! Progress display for long stages: an indicatif spinner on stderr, drawn
//! only when stderr is a terminal (indicatif hides it otherwise), so CI logs
//! get the `tracing` lines alone.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// Starts a spinner for `stage` that shows the elapsed time and a message.
pub fn spinner(stage: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    let style = ProgressStyle::with_template("{spinner} {prefix:>8} [{elapsed}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(stage.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Starts a progress bar for `stage` over `total` bytes, with the rate and
/// the time left.
pub fn bytes(stage: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{prefix:>8} [{elapsed}] [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(stage.to_string());
    bar
}
