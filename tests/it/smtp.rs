//! A real SMTP server on loopback for the mail tests: the `mailin` protocol
//! state machine driven over TCP by a thread per connection. It records each
//! accepted message (envelope and raw bytes), checks AUTH PLAIN credentials
//! when given some, and can refuse chosen recipients (a permanent 550).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use mailin::{Action, Handler, Response, SessionBuilder, response};

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    refuse: BTreeSet<String>,
    credentials: Option<(String, String)>,
}

/// The server; it stops when dropped (its port then refuses connections).
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl SmtpServer {
    /// Start a server that accepts every message.
    pub fn start() -> SmtpServer {
        Self::start_with(None, &[])
    }

    /// Start a server that requires `credentials` (AUTH PLAIN) when given,
    /// and refuses the recipients in `refuse`.
    pub fn start_with(credentials: Option<(&str, &str)>, refuse: &[&str]) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            received: Vec::new(),
            refuse: refuse.iter().map(|s| s.to_string()).collect(),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        }));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    let _ = serve(stream, shared);
                });
            }
        });
        SmtpServer { port, state }
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }
}

/// A port on which nothing listens: an SMTP server that is down.
pub fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

struct Session {
    state: Arc<Mutex<State>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
    user: Option<String>,
}

impl Handler for Session {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        let state = self.state.lock().unwrap();
        if state.credentials.is_some() && self.user.is_none() {
            return response::AUTHENTICATION_REQUIRED;
        }
        self.from = from.to_string();
        self.to.clear();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if self.state.lock().unwrap().refuse.contains(to) {
            return response::NO_MAILBOX;
        }
        self.to.push(to.to_string());
        response::OK
    }

    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> Response {
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.state.lock().unwrap().received.push(Received {
            from: self.from.clone(),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
            user: self.user.clone(),
        });
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        let ok = self
            .state
            .lock()
            .unwrap()
            .credentials
            .as_ref()
            .is_some_and(|(u, p)| u == user && p == password);
        if ok {
            self.user = Some(user.to_string());
            response::AUTH_OK
        } else {
            response::INVALID_CREDENTIALS
        }
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    let peer = stream.peer_addr()?.ip();
    let auth = state.lock().unwrap().credentials.is_some();
    let mut builder = SessionBuilder::new("tokenledger-test-smtp");
    if auth {
        // Loopback only: the test relay offers AUTH without TLS.
        builder
            .enable_auth(mailin::AuthMechanism::Plain)
            .insecure_enable_plaintext_auth();
    }
    let handler = Session {
        state,
        from: String::new(),
        to: Vec::new(),
        data: Vec::new(),
        user: None,
    };
    let mut session = builder.build(peer, handler);
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    session.greeting().write_to(&mut writer)?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let res = session.process(&line);
        match res.action {
            Action::Reply => res.write_to(&mut writer)?,
            Action::Close => {
                res.write_to(&mut writer)?;
                return writer.flush();
            }
            Action::NoReply => {}
            // The test server offers no STARTTLS.
            Action::UpgradeTls => return Ok(()),
        }
    }
}

/// The step of the SMTP conversation at which a [`silent_relay`] stops
/// answering (and holds the connection open, as a stuck server does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilentAt {
    /// Accepts the TCP connection, never sends its 220 greeting.
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    MailFrom,
    Data,
    /// Takes the whole message, never confirms it.
    EndOfData,
}

/// A relay that answers like a normal one (EHLO advertises STARTTLS and
/// AUTH PLAIN) until `step`, then says nothing more. Returns its port and
/// a counter of the connections it accepted.
pub fn silent_relay(step: SilentAt) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { break };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = script(stream, step);
            });
        }
    });
    (port, connections)
}

fn script(mut stream: TcpStream, step: SilentAt) -> std::io::Result<()> {
    // Silent: read (and drop) whatever comes until the client hangs up.
    fn hold(reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
        let mut sink = String::new();
        while reader.read_line(&mut sink)? > 0 {
            sink.clear();
        }
        Ok(())
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    if step == SilentAt::Greeting {
        return hold(&mut reader);
    }
    stream.write_all(b"220 stuck.example ESMTP\r\n")?;
    let mut line = String::new();
    let mut in_data = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                if step == SilentAt::EndOfData {
                    return hold(&mut reader);
                }
                stream.write_all(b"250 2.0.0 queued\r\n")?;
            }
            continue;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let (silent, reply): (bool, &[u8]) = match verb.as_str() {
            "EHLO" | "HELO" => (
                step == SilentAt::Ehlo,
                b"250-stuck.example\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
            ),
            "STARTTLS" => (
                step == SilentAt::StartTls,
                b"454 4.7.0 TLS not available\r\n",
            ),
            "AUTH" => (step == SilentAt::Auth, b"235 2.7.0 ok\r\n"),
            "MAIL" => (step == SilentAt::MailFrom, b"250 2.1.0 ok\r\n"),
            "RCPT" => (false, b"250 2.1.5 ok\r\n"),
            "DATA" => (step == SilentAt::Data, b"354 go ahead\r\n"),
            "QUIT" => {
                stream.write_all(b"221 bye\r\n")?;
                return Ok(());
            }
            _ => (false, b"250 ok\r\n"),
        };
        if silent {
            return hold(&mut reader);
        }
        if verb == "DATA" {
            in_data = true;
        }
        stream.write_all(reply)?;
    }
}
