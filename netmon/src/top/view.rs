//! The terminal view's state (sort, filter, selection) and its keys; `view/draw.rs` draws it.
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::top::data::{Data, Interface, Trends};

mod draw;

/// What the interfaces are sorted by; `s` moves to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Traffic,
    Rx,
    Tx,
    Drops,
    Name,
}

impl Sort {
    fn next(self) -> Self {
        match self {
            Sort::Traffic => Sort::Rx,
            Sort::Rx => Sort::Tx,
            Sort::Tx => Sort::Drops,
            Sort::Drops => Sort::Name,
            Sort::Name => Sort::Traffic,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Traffic => "traffic",
            Sort::Rx => "rx",
            Sort::Tx => "tx",
            Sort::Drops => "drops",
            Sort::Name => "name",
        }
    }
}

pub struct App {
    url: String,
    data: Data,
    trends: Trends,
    sort: Sort,
    filter: String,
    editing_filter: bool,
    /// The selected interface's name: the selection follows it when the order changes.
    pub selected: Option<String>,
    /// Whether the operator chose it; until then the busiest interface is selected.
    chosen: bool,
    error: Option<String>,
}

/// What a key asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// The selection moved: its History is wanted now.
    Refresh,
    Quit,
}

impl App {
    pub fn new(url: String, data: Data) -> Self {
        let mut app = Self {
            url,
            data: Data::default(),
            trends: Trends::default(),
            sort: Sort::Traffic,
            filter: String::new(),
            editing_filter: false,
            selected: None,
            chosen: false,
            error: None,
        };
        app.update(data);
        app
    }

    /// A new poll of the API.
    pub fn update(&mut self, data: Data) {
        self.trends.add(&data.interfaces);
        self.data = data;
        self.error = None;
        let visible = self.visible();
        if !self.chosen
            || !visible
                .iter()
                .any(|i| Some(&i.name) == self.selected.as_ref())
        {
            self.selected = visible.first().map(|i| i.name.clone());
        }
    }

    /// A poll that failed: the last data stays on screen with the reason above it.
    pub fn failed(&mut self, error: &anyhow::Error) {
        self.error = Some(format!("{error:#}"));
    }

    /// The interfaces that pass the filter, in the chosen order.
    fn visible(&self) -> Vec<&Interface> {
        let needle = self.filter.to_lowercase();
        let mut shown: Vec<&Interface> = self
            .data
            .interfaces
            .iter()
            .filter(|i| i.name.to_lowercase().contains(&needle))
            .collect();
        let key = |i: &Interface| {
            let r = i.rates();
            match self.sort {
                Sort::Traffic => r.rx.bytes_per_second + r.tx.bytes_per_second,
                Sort::Rx => r.rx.bytes_per_second,
                Sort::Tx => r.tx.bytes_per_second,
                Sort::Drops => r.rx.drop_rate_percent.max(r.tx.drop_rate_percent),
                Sort::Name => 0.0,
            }
        };
        shown.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        shown
    }

    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() => self.filter.push(c),
                _ => return Action::Continue,
            }
            return self.reselect();
        }
        match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('/') => {
                self.editing_filter = true;
                Action::Continue
            }
            KeyCode::Esc => {
                self.filter.clear();
                self.reselect()
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                Action::Continue
            }
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            _ => Action::Continue,
        }
    }

    fn step(&mut self, delta: isize) -> Action {
        let visible = self.visible();
        let position = visible
            .iter()
            .position(|i| Some(&i.name) == self.selected.as_ref())
            .unwrap_or(0);
        let next = position
            .saturating_add_signed(delta)
            .min(visible.len().saturating_sub(1));
        let name = visible.get(next).map(|i| i.name.clone());
        self.chosen = true;
        self.select(name)
    }

    /// Keeps the selection among the visible interfaces.
    fn reselect(&mut self) -> Action {
        let visible = self.visible();
        if visible
            .iter()
            .any(|i| Some(&i.name) == self.selected.as_ref())
        {
            return Action::Continue;
        }
        let name = visible.first().map(|i| i.name.clone());
        self.select(name)
    }

    fn select(&mut self, name: Option<String>) -> Action {
        if name == self.selected {
            return Action::Continue;
        }
        self.selected = name;
        self.data.history.clear();
        Action::Refresh
    }
}
