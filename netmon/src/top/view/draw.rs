//! How the view is drawn with ratatui: the title, the interfaces with their trends, the
//! selected one's history, processes, drops, connections, queues, findings, peers and recent
//! drops.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    symbols::bar,
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState},
};

use super::App;
use crate::top::text::{clean, human};

impl App {
    pub fn render(&self, frame: &mut Frame) {
        let [title, table, detail, middle, bottom, help] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(6),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(1),
        ])
        .areas(frame.area());
        self.render_title(frame, title);
        self.render_interfaces(frame, table);
        self.render_detail(frame, detail);
        let [processes, drops, connections, queues] = Layout::horizontal([
            Constraint::Percentage(38),
            Constraint::Percentage(22),
            Constraint::Percentage(17),
            Constraint::Percentage(23),
        ])
        .areas(middle);
        self.render_processes(frame, processes);
        self.render_drops(frame, drops);
        self.render_connections(frame, connections);
        self.render_queues(frame, queues);
        let [findings, peers, recent] = Layout::horizontal([
            Constraint::Percentage(35),
            Constraint::Percentage(30),
            Constraint::Percentage(35),
        ])
        .areas(bottom);
        self.render_findings(frame, findings);
        self.render_peers(frame, peers);
        self.render_recent_drops(frame, recent);
        let keys = if self.editing_filter {
            "type a name  Enter keep  Esc clear"
        } else {
            "q quit  s sort  / filter  Esc clear filter  up/down select"
        };
        frame.render_widget(
            Paragraph::new(keys).style(Style::default().add_modifier(Modifier::DIM)),
            help,
        );
    }

    fn render_title(&self, frame: &mut Frame, area: Rect) {
        let mut spans = vec![
            Span::styled("netmon top", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  {}  {} interfaces  sort: {}",
                clean(&self.url),
                self.data.interfaces.len(),
                self.sort.label()
            )),
        ];
        if self.editing_filter || !self.filter.is_empty() {
            let cursor = if self.editing_filter { "_" } else { "" };
            spans.push(Span::raw(format!(
                "  filter: {}{cursor}",
                clean(&self.filter)
            )));
        }
        if let Some(error) = &self.error {
            spans.push(Span::styled(
                format!("  {}", clean(error)),
                Style::default().fg(Color::Red),
            ));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
    }

    fn render_interfaces(&self, frame: &mut Frame, area: Rect) {
        let visible = self.visible();
        let rows = visible.iter().map(|i| {
            let r = i.rates();
            let errors = r.rx.error_rate_percent.max(r.tx.error_rate_percent);
            let drops = r.rx.drop_rate_percent.max(r.tx.drop_rate_percent);
            let warn = |v: f64| {
                if v > 0.0 {
                    Style::default().fg(Color::Yellow)
                } else {
                    Style::default()
                }
            };
            Row::new(vec![
                Cell::from(clean(&i.name)),
                Cell::from(clean(i.operstate.as_deref().unwrap_or("-"))),
                Cell::from(human(r.rx.bytes_per_second)),
                Cell::from(human(r.tx.bytes_per_second)),
                Cell::from(human(r.rx.packets_per_second)),
                Cell::from(human(r.tx.packets_per_second)),
                Cell::from(format!("{errors:.2}")).style(warn(errors)),
                Cell::from(format!("{drops:.2}")).style(warn(drops)),
                Cell::from(trend(self.trends.of(&i.name))),
            ])
        });
        let header = Row::new([
            "interface",
            "state",
            "rx B/s",
            "tx B/s",
            "rx pkt/s",
            "tx pkt/s",
            "err %",
            "drop %",
            "trend",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD));
        let table = Table::new(
            rows,
            [
                // Interface names have at most 15 characters.
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Min(crate::top::data::TREND_LENGTH as u16),
            ],
        )
        .header(header)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .block(Block::default().borders(Borders::ALL).title("Interfaces"));
        let mut state = TableState::default().with_selected(
            visible
                .iter()
                .position(|i| Some(&i.name) == self.selected.as_ref()),
        );
        frame.render_stateful_widget(table, area, &mut state);
    }

    fn render_detail(&self, frame: &mut Frame, area: Rect) {
        let name = self.selected.as_deref().map(clean).unwrap_or_default();
        let [rx, tx] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(area);
        for (direction, area) in [("rx", rx), ("tx", tx)] {
            let values: Vec<u64> = self
                .data
                .history
                .iter()
                .map(|p| {
                    let d = if direction == "rx" { &p.rx } else { &p.tx };
                    d.bytes_per_second as u64
                })
                .collect();
            let now = values.last().copied().unwrap_or(0);
            let title = format!("{name} {direction} {}B/s", human(now as f64));
            frame.render_widget(
                Sparkline::default()
                    .block(Block::default().borders(Borders::ALL).title(title))
                    .data(&values)
                    .style(Style::default().fg(if direction == "rx" {
                        Color::Cyan
                    } else {
                        Color::Magenta
                    })),
                area,
            );
        }
    }

    fn render_processes(&self, frame: &mut Frame, area: Rect) {
        let mut processes: Vec<_> = self.data.processes.iter().collect();
        processes.sort_by(|a, b| {
            (b.rate("tx") + b.rate("rx"))
                .total_cmp(&(a.rate("tx") + a.rate("rx")))
                .then_with(|| b.bytes().cmp(&a.bytes()))
        });
        let rows = processes.iter().map(|p| {
            Row::new(vec![
                p.pid.to_string(),
                clean(&p.name),
                human(p.rate("tx")),
                human(p.rate("rx")),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Min(10),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new(["pid", "process", "tx B/s", "rx B/s"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title("Top processes"),
        );
        frame.render_widget(table, area);
    }

    /// The peers, failing first as the agent orders them.
    fn render_peers(&self, frame: &mut Frame, area: Rect) {
        let rows = self.data.peers.iter().map(|p| {
            let failed = p.failed();
            let style = if failed > 0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            Row::new(vec![
                clean(&p.role),
                format!("{}:{}", clean(&p.peer), clean(&p.port)),
                human(p.ok() as f64),
                human(failed as f64),
                human(p.connections as f64),
            ])
            .style(style)
        });
        let widths = [
            Constraint::Length(6),
            Constraint::Min(12),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
        ];
        let table = Table::new(rows, widths)
            .header(
                Row::new(["role", "peer", "ok", "failed", "open"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::default().borders(Borders::ALL).title("Peers"));
        frame.render_widget(table, area);
    }

    /// Listeners' accept queues and connection tracking, the fullest first; red when full.
    fn render_queues(&self, frame: &mut Frame, area: Rect) {
        let rows = self.data.queues.iter().map(|q| {
            let style = if q.limit > 0 && q.used >= q.limit {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            Row::new(vec![
                clean(&q.name),
                format!("{}/{}", human(q.used as f64), human(q.limit as f64)),
            ])
            .style(style)
        });
        let table = Table::new(rows, [Constraint::Min(12), Constraint::Length(11)])
            .block(Block::default().borders(Borders::ALL).title("Queues"));
        frame.render_widget(table, area);
    }

    fn render_drops(&self, frame: &mut Frame, area: Rect) {
        let rows = self
            .data
            .drops_by_reason()
            .into_iter()
            .map(|(reason, count)| Row::new(vec![clean(&reason), human(count as f64)]));
        let table = Table::new(rows, [Constraint::Min(12), Constraint::Length(8)]).block(
            Block::default()
                .borders(Borders::ALL)
                .title("Drops by reason"),
        );
        frame.render_widget(table, area);
    }

    fn render_connections(&self, frame: &mut Frame, area: Rect) {
        let mut states: Vec<_> = self
            .data
            .connections
            .iter()
            .filter(|(_, n)| **n > 0)
            .collect();
        states.sort_by(|a, b| b.1.cmp(a.1));
        let rows = states
            .into_iter()
            .map(|(state, n)| Row::new(vec![state.clone(), n.to_string()]));
        let table = Table::new(rows, [Constraint::Min(11), Constraint::Length(7)])
            .block(Block::default().borders(Borders::ALL).title("Connections"));
        frame.render_widget(table, area);
    }

    fn render_findings(&self, frame: &mut Frame, area: Rect) {
        let lines: Vec<Line> = if self.data.findings.is_empty() {
            vec![Line::from("no findings")]
        } else {
            self.data
                .findings
                .iter()
                .map(|f| {
                    let color = if f.severity == "critical" {
                        Color::Red
                    } else {
                        Color::Yellow
                    };
                    Line::from(vec![
                        Span::styled(clean(&f.severity), Style::default().fg(color)),
                        Span::raw(format!(" {}: {}", clean(&f.subject), clean(&f.summary))),
                    ])
                })
                .collect()
        };
        frame.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title("Findings")),
            area,
        );
    }

    fn render_recent_drops(&self, frame: &mut Frame, area: Rect) {
        let lines: Vec<Line> = self
            .data
            .recent_drops
            .iter()
            .map(|s| {
                Line::from(format!(
                    "{} {} {}",
                    if s.interface.is_empty() {
                        "-".to_string()
                    } else {
                        clean(&s.interface)
                    },
                    clean(&s.reason),
                    clean(&s.location)
                ))
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines)
                .block(Block::default().borders(Borders::ALL).title("Recent drops")),
            area,
        );
    }
}

/// A row's trend as bars, scaled to its own highest value.
fn trend(values: Option<&std::collections::VecDeque<u64>>) -> String {
    const LEVELS: [&str; 9] = [
        " ",
        bar::ONE_EIGHTH,
        bar::ONE_QUARTER,
        bar::THREE_EIGHTHS,
        bar::HALF,
        bar::FIVE_EIGHTHS,
        bar::THREE_QUARTERS,
        bar::SEVEN_EIGHTHS,
        bar::FULL,
    ];
    let Some(values) = values else {
        return String::new();
    };
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values
        .iter()
        .map(|v| LEVELS[(v * 8).div_ceil(max) as usize])
        .collect()
}
