//! `hostsmith ssh-config HOST`: the `Host github.com-<repo>` blocks that make
//! `git clone git@github.com-<repo>:OWNER/<repo>.git` use the host's own deploy key for that
//! repository (GitHub accepts a deploy key for one repository only, so each needs an alias).
//!
//! The paths match the NixOS module (`nix/modules/host.nix`): `/root/.ssh/<repo>-deploy`.

use serde::Serialize;

use crate::command::{Context, host_names};
use crate::error::{Error, Result};
use crate::fleet::Fleet;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(value_name = "HOST")]
    pub host: String,
    /// Where the deploy keys are on the host.
    #[arg(long, value_name = "DIR", default_value = "/root/.ssh")]
    pub key_dir: String,
}

#[derive(Debug, Serialize)]
struct Block {
    alias: String,
    repo: String,
    identity_file: String,
}

/// # Errors
/// Unknown host, or a key directory that cannot be written into ssh_config safely.
pub(crate) fn run(args: &Args, ctx: &Context) -> Result<()> {
    let host = host_names(std::slice::from_ref(&args.host))?.remove(0);
    let dir = args.key_dir.trim_end_matches('/');
    if !dir.starts_with('/') && !dir.starts_with("~/") || dir.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '#') {
        return Err(Error::Usage(format!(
            "--key-dir `{}` must be an absolute path (or start with `~/`) without spaces, quotes or `#`",
            args.key_dir
        )));
    }
    let fleet = Fleet::open(&ctx.fleet_dir)?;
    let record = fleet.record(&host)?.ok_or_else(|| Error::UnknownHost { host: host.to_string() })?;
    let blocks: Vec<Block> = record
        .deploy_keys
        .keys()
        .map(|repo| Block { alias: format!("github.com-{repo}"), repo: repo.clone(), identity_file: format!("{dir}/{repo}-deploy") })
        .collect();
    let mut text = format!("# deploy-key aliases of {host}: git clone git@github.com-<repo>:OWNER/<repo>.git\n");
    if blocks.is_empty() {
        text.push_str(&format!("# {host} has no deploy keys\n"));
    }
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!(
            "Host {}\n    HostName github.com\n    User git\n    IdentityFile {}\n    IdentitiesOnly yes\n",
            b.alias, b.identity_file
        ));
    }
    ctx.out.json(&serde_json::json!({ "host": host.as_str(), "blocks": blocks, "text": text }));
    ctx.out.line(text.trim_end_matches('\n'));
    Ok(())
}
