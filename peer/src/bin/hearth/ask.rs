//! The CLI's side of the daemon's control socket: reads answered by a running daemon (which
//! holds the vault unlocked) or from the home opened here (from its materialized view when
//! it can, as are item writes), and the unlock a locked daemon asks for before it answers
//! anything.

use std::time::Duration;

use anyhow::{bail, Context};
use hearth_peer::home::HomeError;
use hearth_peer::node::control::{Client, Reply, Request};
use hearth_peer::reads::{self, ListRow, ReadRequest, View};

use hearth_peer::actions::{self, WriteOutcome, WriteRequest};

use crate::commands::{now_ms, read_secret, Ctx, NotFound};

impl Ctx {
    /// Shows something of the vault: through the daemon while one runs (it holds the vault
    /// unlocked: no passphrase asked), else from the home opened here.
    pub(crate) fn read(&self, req: ReadRequest) -> anyhow::Result<View> {
        let Some(daemon) = Client::connect(self.home.dir()) else { return self.read_here(&req) };
        match self.ask_daemon(daemon, &Request::Read { read: req })? {
            Reply::Read(view) => Ok(*view),
            Reply::Error { message, lookup: true } => Err(NotFound(message).into()),
            Reply::Error { message, .. } => Err(anyhow::anyhow!(message)),
            other => bail!("the daemon answered a read with {other:?}"),
        }
    }

    /// Answers a read from the home opened here (asking for the passphrase of a sealed one).
    pub(crate) fn read_here(&self, req: &ReadRequest) -> anyhow::Result<View> {
        let from_view = match req {
            ReadRequest::Item { name } => {
                self.read_view(|home, pass| home.view_item(pass, name)).map(|it| Ok(View::Item(it)))
            }
            ReadRequest::List { .. } | ReadRequest::Conflicts => self
                .read_view(|home, pass| home.view_state(pass))
                .and_then(|state| reads::answer_from_state(&state, req)),
            ReadRequest::Devices => self.read_view(|home, pass| home.view_devices(pass)).map(Ok),
            _ => None,
        };
        let answered = match from_view {
            Some(v) => {
                tracing::debug!("answered from the materialized view");
                v
            }
            None => reads::answer(&self.open()?, req),
        };
        answered.map_err(|e| match e {
            // A name that did not resolve: exit status 3.
            reads::ReadError::Lookup(l) => l.into(),
            other => other.into(),
        })
    }

    /// Applies an item action from the home's materialized view, without replaying the log
    /// (the caller holds the writer lock); `None` when the view cannot take it: open the
    /// home and apply it there.
    pub(crate) fn write_from_view(&self, req: &WriteRequest) -> Option<anyhow::Result<WriteOutcome>> {
        let (names, now) = (req.names()?, now_ms());
        let mut appender = self.read_view(|home, pass| home.appender(pass, &names, now))?;
        let out = actions::apply_from_view(&mut appender, req, now)?;
        tracing::debug!("write taken from the materialized view");
        Some(out.map_err(Into::into))
    }

    /// What `read` gets from the home's materialized view, without replaying the log; `None`
    /// (the log answers, and reports any error) when the view cannot answer, or a passphrase
    /// would have to be asked for (the log's path asks).
    fn read_view<T>(
        &self,
        read: impl FnOnce(&hearth_peer::home::Home, Option<&str>) -> Result<Option<T>, HomeError>,
    ) -> Option<T> {
        if self.passphrase.is_none() && self.home.is_sealed() {
            return None;
        }
        match read(&self.home, self.passphrase.as_deref().map(String::as_str)) {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!("the materialized view did not answer: {e}");
                None
            }
        }
    }

    /// Every item's row, or those matching `query`, handed to `rows` part by part as they
    /// come (through the daemon when one runs); `rows` returns false to stop.
    pub(crate) fn read_list(
        &self,
        query: Option<&str>,
        mut rows: impl FnMut(Vec<ListRow>) -> bool,
    ) -> anyhow::Result<()> {
        let req = ReadRequest::List { query: query.map(str::to_owned) };
        let view = match Client::connect(self.home.dir()) {
            None => self.read_here(&req)?,
            Some(daemon) => match self.ask_daemon_each(daemon, &Request::Read { read: req }, &mut rows)? {
                Reply::Read(view) => *view,
                Reply::Error { message, .. } => bail!(message),
                other => bail!("the daemon answered a list with {other:?}"),
            },
        };
        match view {
            View::List { items } => {
                rows(items);
                Ok(())
            }
            other => bail!("asked for a list, got {other:?}"),
        }
    }

    /// Sends `req` to the daemon; a locked daemon is unlocked first with the passphrase
    /// given (env or file) or asked at the terminal, and asked again.
    pub(crate) fn ask_daemon(&self, daemon: Client, req: &Request) -> anyhow::Result<Reply> {
        let mut rows = Vec::new();
        let reply = self.ask_daemon_each(daemon, req, &mut |part| {
            rows.extend(part);
            true
        })?;
        Ok(hearth_peer::node::control::with_rows(rows, reply))
    }

    /// [`Ctx::ask_daemon`] handing the parts of a long list to `rows` as they come.
    fn ask_daemon_each(
        &self,
        mut daemon: Client,
        req: &Request,
        rows: &mut dyn FnMut(Vec<ListRow>) -> bool,
    ) -> anyhow::Result<Reply> {
        let reply = daemon.request_each(req, Duration::from_secs(60), &mut *rows)?;
        if !matches!(reply, Reply::Locked { .. }) {
            return Ok(reply);
        }
        let pass = match &self.passphrase {
            Some(p) => p.clone(),
            None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => read_secret("passphrase: ")?,
            None => return Err(HomeError::Locked.into()),
        };
        let mut unlock = Request::Unlock { passphrase: pass.to_string() };
        // Starting the node opens the whole vault: longer than a command.
        let answer = daemon.request(&unlock, Duration::from_secs(300));
        if let Request::Unlock { passphrase } = &mut unlock {
            zeroize::Zeroize::zeroize(passphrase);
        }
        match answer? {
            Reply::Unlocked { unlocked: true } => {}
            Reply::Locked { .. } => return Err(HomeError::WrongPassphrase.into()),
            Reply::Error { message, .. } => bail!("could not unlock the daemon: {message}"),
            other => bail!("the daemon answered an unlock with {other:?}"),
        }
        // The unlocked daemon serves a socket of its own: ask there.
        let mut again = Client::connect(self.home.dir()).context("the daemon stopped while unlocking")?;
        Ok(again.request_each(req, Duration::from_secs(60), rows)?)
    }
}
