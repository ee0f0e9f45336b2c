//! Printing in the RFC 8866 §5 order (`v o s i u e p c b t r z k a`, then each `m i c b k a`)
//! with CRLF line ends; what is printed parses back to the same description.

use std::fmt::{self, Display, Formatter, Write};

use crate::model::{Attribute, Bandwidth, MediaDescription, SessionDescription};

impl Display for SessionDescription {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        write!(
            f,
            "o={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.nettype, o.addrtype, o.address
        )?;
        write!(f, "s={}\r\n", self.session_name)?;
        line(f, 'i', self.information.as_deref())?;
        line(f, 'u', self.uri.as_deref())?;
        for e in &self.emails {
            line(f, 'e', Some(e))?;
        }
        for p in &self.phones {
            line(f, 'p', Some(p))?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        bandwidths(f, &self.bandwidths)?;
        for t in &self.timing {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
            for r in &t.repeats {
                line(f, 'r', Some(r))?;
            }
        }
        line(f, 'z', self.time_zones.as_deref())?;
        line(f, 'k', self.encryption_key.as_deref())?;
        attributes(f, &self.attributes)?;
        for m in &self.media {
            m.fmt(f)?;
        }
        Ok(())
    }
}

impl Display for MediaDescription {
    /// The `m=` section, from its `m=` line to its last attribute.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            f.write_char(' ')?;
            f.write_str(fmt)?;
        }
        f.write_str("\r\n")?;
        line(f, 'i', self.information.as_deref())?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        bandwidths(f, &self.bandwidths)?;
        line(f, 'k', self.encryption_key.as_deref())?;
        attributes(f, &self.attributes)
    }
}

impl Display for Attribute {
    /// The text after `a=`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl SessionDescription {
    /// The description as a message body.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

fn line(f: &mut Formatter<'_>, t: char, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => write!(f, "{t}={v}\r\n"),
        None => Ok(()),
    }
}

fn bandwidths(f: &mut Formatter<'_>, list: &[Bandwidth]) -> fmt::Result {
    for b in list {
        write!(f, "b={}:{}\r\n", b.kind, b.value)?;
    }
    Ok(())
}

fn attributes(f: &mut Formatter<'_>, list: &[Attribute]) -> fmt::Result {
    for a in list {
        write!(f, "a={a}\r\n")?;
    }
    Ok(())
}
