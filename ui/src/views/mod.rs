//! One module per view; each draws into the body area from the snapshot and the app state.

pub mod costs;
pub mod failures;
pub mod logs;
pub mod overview;
pub mod runs;
pub mod stream;
pub mod trends;
pub mod watermarks;

use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Block, Row, Table, TableState};
use ratatui::Frame;

use crate::theme::Theme;

/// A bordered table with a header and the selected row highlighted (scrolled into view).
#[allow(clippy::too_many_arguments)]
pub(crate) fn table(
    frame: &mut Frame,
    area: Rect,
    title: String,
    header: &[&str],
    rows: Vec<Row>,
    widths: &[Constraint],
    selected: Option<usize>,
    theme: &Theme,
) {
    let n = rows.len();
    let t = Table::new(rows, widths.to_vec())
        .header(Row::new(header.to_vec()).style(theme.header()))
        .block(Block::bordered().title(title))
        .row_highlight_style(theme.selected());
    let mut state =
        TableState::default().with_selected(selected.filter(|_| n > 0).map(|s| s.min(n - 1)));
    frame.render_stateful_widget(t, area, &mut state);
}
