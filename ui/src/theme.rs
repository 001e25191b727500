//! Styles. Only the 16 ANSI colours (which every terminal maps to its own light or dark
//! palette) and modifiers; with colour off (NO_COLOR, --no-color) only modifiers remain, so
//! state is never told by colour alone: every state is also a word.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn normal(&self) -> Style {
        Style::new()
    }
    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }
    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new()
        }
    }
    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    pub fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// A failure scenario's state: at rest, in an episode, or waiting for the operator.
    pub fn failure(&self, state: ecom_model::failures::FailureState) -> Style {
        use ecom_model::failures::FailureState::*;
        match state {
            Ok | Recovered => self.ok(),
            NeedsOperator => self.bad(),
            Detected | Mitigating | Recovering => self.warn(),
        }
    }

    /// Selection and focus: reverse video reads on light and dark backgrounds alike.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    pub fn header(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }
}
