//! `netmon top`: a terminal view of a running agent, a client of its JSON API (it touches no
//! kernel map and reads nothing of the host itself).
mod client;
mod data;
mod text;
mod view;

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use client::Client;
pub use client::Target;
use data::Data;
use view::{Action, App};

/// Shows the agent at `target` until `q`; polls it every `interval`. An agent that cannot be
/// reached or refuses the credentials is an error before the screen is taken over.
pub fn run(target: Target, interval: Duration) -> anyhow::Result<()> {
    let url = target.url.clone();
    let client = Client::new(target)?;
    let first = Data::fetch(&client, None)?;
    let mut app = App::new(url, first);
    if app.selected.is_some() {
        refresh(&client, &mut app);
    }
    let mut terminal = ratatui::try_init()?;
    let result = show(&mut terminal, &client, &mut app, interval);
    ratatui::try_restore()?;
    result
}

fn refresh(client: &Client, app: &mut App) {
    match Data::fetch(client, app.selected.as_deref()) {
        Ok(data) => app.update(data),
        Err(err) => app.failed(&err),
    }
}

fn show(
    terminal: &mut ratatui::DefaultTerminal,
    client: &Client,
    app: &mut App,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut next_poll = Instant::now() + interval;
    loop {
        terminal.draw(|frame| app.render(frame))?;
        let wait = next_poll.saturating_duration_since(Instant::now());
        if event::poll(wait)?
            && let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
        {
            match app.key(key) {
                Action::Quit => return Ok(()),
                Action::Refresh => next_poll = Instant::now(),
                Action::Continue => {}
            }
        }
        if Instant::now() >= next_poll {
            refresh(client, app);
            next_poll = Instant::now() + interval;
        }
    }
}
