//! How age plugins and passphrase-protected keys reach the person running hostsmith: on the
//! terminal (`/dev/tty`, so prompts work while stdout is piped), never through stdin.
//!
//! One unlock per run: an answer (a PIN, a passphrase, a confirmation) is remembered for the
//! rest of the run once the operation it was given for succeeded, and given again when the
//! same question comes back — a plugin asks anew in every session, and a re-key of many
//! files opens many sessions. An answer is only kept after it worked, so a wrong PIN is never
//! replayed into a hardware key that counts failed attempts. Interactive operations take
//! turns ([`AgeUi::turn`]), so parallel workers never ask twice at once. Answers live in
//! memory only and are zeroized when the process ends or forgets them.

use std::collections::HashMap;
use std::io::{BufRead as _, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use age::secrecy::SecretString;
use zeroize::Zeroizing;

/// An answer given on the terminal.
#[derive(Clone)]
enum Answer {
    Secret(Zeroizing<String>),
    Public(String),
    Confirm(bool),
}

/// Answers that worked, by question, for the rest of the run.
static ANSWERS: Mutex<Option<HashMap<String, Answer>>> = Mutex::new(None);

/// Held by whoever may ask a question or run an interactive plugin.
static TURN: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Pending {
    answers: Vec<(String, Answer)>,
    /// A question that could not be asked: there is no terminal.
    unasked: Option<String>,
}

/// The age crate's callbacks for one operation (a wrap, an unwrap, a key file's decryption).
#[derive(Clone, Default)]
pub(crate) struct AgeUi {
    pending: Arc<Mutex<Pending>>,
    /// Who asks (a plugin, a key file): answers are remembered per asker, so two plugins that
    /// happen to ask the same question never get each other's answer.
    scope: String,
}

impl AgeUi {
    /// Callbacks for questions asked by `scope` (`age-plugin-yubikey`, a key file's name).
    #[must_use]
    pub(crate) fn new(scope: &str) -> Self {
        Self { pending: Arc::default(), scope: scope.to_string() }
    }

    /// Waits for the turn to run something that may ask the user.
    pub(crate) fn turn() -> MutexGuard<'static, ()> {
        lock(&TURN)
    }

    /// The operation these callbacks served succeeded: its answers are kept for the run.
    pub(crate) fn succeeded(&self) {
        let answers = std::mem::take(&mut lock(&self.pending).answers);
        if !answers.is_empty() {
            lock(&ANSWERS).get_or_insert_with(HashMap::new).extend(answers);
        }
    }

    /// `message`, and, when a question went unasked for want of a terminal, what to do.
    /// The age crate isolates quoted names with Unicode direction marks; they are dropped.
    #[must_use]
    pub(crate) fn explain(&self, message: &str) -> String {
        let message: String = message.chars().filter(|c| !matches!(c, '\u{2066}'..='\u{2069}')).collect();
        match &lock(&self.pending).unasked {
            Some(q) => format!("{message} (it asked \"{}\", and there is no terminal to ask on: run hostsmith in a terminal)", q.trim()),
            None => message,
        }
    }

    /// Whether a question went unasked for want of a terminal.
    #[must_use]
    pub(crate) fn lacked_terminal(&self) -> bool {
        lock(&self.pending).unasked.is_some()
    }

    fn key(&self, question: &str) -> String {
        format!("{}\n{question}", self.scope)
    }

    fn remembered(&self, question: &str) -> Option<Answer> {
        lock(&ANSWERS).as_ref().and_then(|a| a.get(&self.key(question)).cloned())
    }

    fn ask(&self, question: &str, read: impl FnOnce(&mut std::fs::File) -> std::io::Result<Answer>) -> Option<Answer> {
        if let Some(a) = self.remembered(question) {
            return Some(a);
        }
        let Ok(mut tty) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty") else {
            lock(&self.pending).unasked = Some(question.to_string());
            return None;
        };
        let answer = read(&mut tty).ok()?;
        lock(&self.pending).answers.push((self.key(question), answer.clone()));
        Some(answer)
    }

    /// Asks for a secret on the terminal without echo; the question stays on the screen.
    #[must_use]
    pub(crate) fn secret(&self, question: &str) -> Option<Zeroizing<String>> {
        let answer = self.ask(question, |_| {
            let s = rpassword::prompt_password(format!("{} ", question.trim_end()))?;
            Ok(Answer::Secret(Zeroizing::new(s)))
        });
        match answer {
            Some(Answer::Secret(s)) => Some(s),
            _ => None,
        }
    }
}

fn read_line(tty: &mut std::fs::File) -> std::io::Result<String> {
    let mut line = String::new();
    std::io::BufReader::new(tty).read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

impl age::Callbacks for AgeUi {
    fn display_message(&self, message: &str) {
        eprintln!("{message}");
    }

    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        let no = no.unwrap_or("no");
        let question = format!("{message} [{yes}/{no}]");
        match self.ask(&question, |tty| {
            write!(tty, "{question} ")?;
            let line = read_line(tty)?;
            Ok(Answer::Confirm(line.eq_ignore_ascii_case(yes) || (line.eq_ignore_ascii_case("y") && !no.starts_with(['y', 'Y']))))
        })? {
            Answer::Confirm(b) => Some(b),
            _ => None,
        }
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        match self.ask(description, |tty| {
            write!(tty, "{} ", description.trim_end())?;
            read_line(tty).map(Answer::Public)
        })? {
            Answer::Public(s) => Some(s),
            _ => None,
        }
    }

    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        self.secret(description).map(|s| SecretString::from(s.as_str().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_only_after_success_and_a_missing_terminal_is_explained() {
        let ui = AgeUi::new("age-plugin-a");
        lock(&ui.pending).answers.push((ui.key("PIN for test-a"), Answer::Secret(Zeroizing::new("1234".into()))));
        assert!(ui.remembered("PIN for test-a").is_none(), "kept before it worked");
        ui.succeeded();
        assert!(matches!(ui.remembered("PIN for test-a"), Some(Answer::Secret(s)) if s.as_str() == "1234"));
        assert!(AgeUi::new("age-plugin-b").remembered("PIN for test-a").is_none(), "another plugin's answer");
        let ui = AgeUi::new("age-plugin-a");
        lock(&ui.pending).unasked = Some("Enter PIN ".into());
        let text = ui.explain("plugin \u{2068}x\u{2069} failed");
        assert!(text.starts_with("plugin x failed"), "{text}");
        assert!(text.contains("\"Enter PIN\"") && text.contains("no terminal"), "{text}");
    }
}
