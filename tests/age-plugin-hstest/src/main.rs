//! `age-plugin-hstest`: a software age plugin that hostsmith's tests run against real sops.
//!
//! A recipient `age1hstest1…` is an X25519 public key; an identity `AGE-PLUGIN-HSTEST-1…`
//! is a flag byte and the X25519 secret key. Wrapping is age's own X25519 wrapping, with the
//! stanza renamed `hstest`, so only this plugin opens it. An identity whose flag says so asks
//! for a PIN (`HSTEST_PIN`, default `246810`) through the age client once per session, before
//! it unwraps anything, as a hardware key would.
//!
//! Every session appends a line to `$HSTEST_LOG` when it is set: `recipient N` (N file keys
//! wrapped), `identity N` (N files offered), `pin` (a PIN was asked for), so tests can count
//! sessions and prompts.
//!
//!   age-plugin-hstest --generate [--pin]     prints a new identity and its recipient

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};

use age::secrecy::ExposeSecret as _;
use age_core::format::{FileKey, Stanza};
use age_plugin::{Callbacks, PluginHandler, identity, recipient, run_state_machine};
use bech32::{ToBase32 as _, Variant};

const TAG: &str = "hstest";
const FLAG_PIN: u8 = 1;

fn log(line: &str) {
    if let Some(path) = std::env::var_os("HSTEST_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn x25519_identity(secret: &[u8]) -> Option<age::x25519::Identity> {
    let s = bech32::encode("age-secret-key-", secret.to_base32(), Variant::Bech32).ok()?.to_uppercase();
    s.parse().ok()
}

fn x25519_recipient(public: &[u8]) -> Option<age::x25519::Recipient> {
    bech32::encode("age", public.to_base32(), Variant::Bech32).ok()?.parse().ok()
}

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = Wrapper;
    type IdentityV1 = Unwrapper;

    fn recipient_v1(self) -> io::Result<Wrapper> {
        Ok(Wrapper(Vec::new()))
    }

    fn identity_v1(self) -> io::Result<Unwrapper> {
        Ok(Unwrapper(Vec::new()))
    }
}

struct Wrapper(Vec<age::x25519::Recipient>);

impl recipient::RecipientPluginV1 for Wrapper {
    fn add_recipient(&mut self, index: usize, _: &str, bytes: &[u8]) -> Result<(), recipient::Error> {
        let r = x25519_recipient(bytes).ok_or_else(|| recipient::Error::Recipient { index, message: "not an hstest recipient".into() })?;
        self.0.push(r);
        Ok(())
    }

    fn add_identity(&mut self, index: usize, _: &str, _: &[u8]) -> Result<(), recipient::Error> {
        Err(recipient::Error::Identity { index, message: "hstest wraps for recipients only".into() })
    }

    fn labels(&mut self) -> HashSet<String> {
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _: impl Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        log(&format!("recipient {}", file_keys.len()));
        let mut out = Vec::new();
        for key in &file_keys {
            let mut stanzas = Vec::new();
            for r in &self.0 {
                let (wrapped, _) = age::Recipient::wrap_file_key(r, key).map_err(|e| io::Error::other(e.to_string()))?;
                stanzas.extend(wrapped.into_iter().map(|mut s| {
                    s.tag = TAG.into();
                    s
                }));
            }
            out.push(stanzas);
        }
        Ok(Ok(out))
    }
}

struct Unwrapper(Vec<(bool, age::x25519::Identity)>);

impl identity::IdentityPluginV1 for Unwrapper {
    fn add_identity(&mut self, index: usize, _: &str, bytes: &[u8]) -> Result<(), identity::Error> {
        let bad = || identity::Error::Identity { index, message: "not an hstest identity".into() };
        let (flags, secret) = bytes.split_first().ok_or_else(bad)?;
        self.0.push((flags & FLAG_PIN != 0, x25519_identity(secret).ok_or_else(bad)?));
        Ok(())
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        mut callbacks: impl Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        log(&format!("identity {}", files.len()));
        let ours = files.iter().any(|f| f.iter().any(|s| s.tag == TAG));
        if ours && self.0.iter().any(|(pin, _)| *pin) {
            log("pin");
            let want = std::env::var("HSTEST_PIN").unwrap_or_else(|_| "246810".into());
            match callbacks.request_secret("Enter PIN for the hstest key:")? {
                Ok(pin) if pin.expose_secret() == want => {}
                Ok(_) => {
                    callbacks.error(identity::Error::Identity { index: 0, message: "wrong PIN".into() })?.ok();
                    return Ok(HashMap::new());
                }
                Err(_) => {
                    callbacks.error(identity::Error::Identity { index: 0, message: "a PIN is needed and none was given".into() })?.ok();
                    return Ok(HashMap::new());
                }
            }
        }
        let mut out = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            for s in file.iter().filter(|s| s.tag == TAG) {
                let x = Stanza { tag: "X25519".into(), args: s.args.clone(), body: s.body.clone() };
                if let Some(Ok(key)) = self.0.iter().find_map(|(_, id)| age::Identity::unwrap_stanza(id, &x)) {
                    out.insert(i, Ok(key));
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn bech32_bytes(s: &str) -> io::Result<Vec<u8>> {
    let (_, data, _) = bech32::decode(s).map_err(|e| io::Error::other(e.to_string()))?;
    bech32::FromBase32::from_base32(&data).map_err(|e: bech32::Error| io::Error::other(e.to_string()))
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(sm) = args.iter().find_map(|a| a.strip_prefix("--age-plugin=")) {
        return run_state_machine(sm, Handler);
    }
    if args.first().map(String::as_str) == Some("--generate") {
        let id = age::x25519::Identity::generate();
        let secret = id.to_string();
        let mut bytes = vec![if args.iter().any(|a| a == "--pin") { FLAG_PIN } else { 0 }];
        bytes.extend(bech32_bytes(secret.expose_secret())?);
        age_plugin::print_new_identity(TAG, &bytes, &bech32_bytes(&id.to_public().to_string())?);
        return Ok(());
    }
    eprintln!("usage: age-plugin-hstest --generate [--pin]");
    std::process::exit(2)
}
