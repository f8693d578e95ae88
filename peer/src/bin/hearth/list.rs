//! `hearth list [QUERY]`: every item by name, or those matching QUERY (name, username,
//! email or URL; substring or fuzzy), best first. Rows are printed as they come from the
//! daemon, so a 100,000-item list (`--json` too) starts at once.

use std::io::Write;

use hearth_peer::reads::ListRow;

use crate::commands::Ctx;

/// Prints rows as they come: one name per line, or one JSON array.
struct Printer<W: Write> {
    out: W,
    json: bool,
    first: bool,
    /// The first write that failed (a closed pipe ends the listing quietly).
    failed: Option<std::io::Error>,
}

impl<W: Write> Printer<W> {
    fn rows(&mut self, rows: &[ListRow]) -> bool {
        for r in rows {
            let done = if self.json {
                let sep = if std::mem::take(&mut self.first) { "[" } else { "," };
                self.out.write_all(sep.as_bytes()).and_then(|()| Ok(serde_json::to_writer(&mut self.out, r)?))
            } else {
                writeln!(self.out, "{}{}", r.name, if r.conflicted { "  (conflict)" } else { "" })
            };
            if let Err(e) = done {
                self.failed = Some(e);
                return false;
            }
        }
        true
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.json {
            self.out.write_all(if self.first { b"[]\n" } else { b"]\n" })?;
        }
        self.out.flush()
    }
}

pub(crate) fn run(ctx: &Ctx, query: Option<&str>) -> anyhow::Result<()> {
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut p = Printer { out, json: ctx.json, first: true, failed: None };
    ctx.read_list(query, |rows| p.rows(&rows))?;
    match p.finish() {
        // `hearth list | head`: the reader has all it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, conflicted: bool) -> ListRow {
        ListRow { id: "ab".into(), name: name.into(), fields: vec!["k".into()], conflicted }
    }

    fn printed(json: bool, parts: &[&[ListRow]]) -> String {
        let mut p = Printer { out: Vec::new(), json, first: true, failed: None };
        for part in parts {
            assert!(p.rows(part));
        }
        p.finish().unwrap();
        String::from_utf8(p.out).unwrap()
    }

    #[test]
    fn parts_print_as_one_list() {
        let (a, b) = ([row("a", false)], [row("b", true)]);
        assert_eq!(printed(false, &[&a, &[], &b]), "a\nb  (conflict)\n");
        let json: serde_json::Value = serde_json::from_str(&printed(true, &[&a, &b])).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 2);
        assert_eq!(json[1]["conflicted"], true);
        assert_eq!(printed(true, &[]), "[]\n");
        assert_eq!(printed(false, &[]), "");
    }
}
