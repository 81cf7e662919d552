//! `tessera webhook add|list|remove|deliveries`: a client's webhooks on the coordinator (the
//! requests are `tessera_api::client`'s; the coordinator checks the fields and names the
//! one that is wrong).

use crate::farm::{print_config, secret, usage, usage_error, ClientArgs};
use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use tessera_api::flags::ClientConfig;
use tessera_api::{WebhookDelivery, WebhookRequest, WebhookView, WEBHOOK_EVENTS};

/// `tessera webhook`.
#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Add a webhook: the coordinator POSTs the chosen events of this client's jobs to
    /// URL, signed with the secret (`Tessera-Signature`); prints the hook's id.
    Add(AddArgs),
    /// List this client's webhooks (their secrets are never shown).
    List(ListArgs),
    /// Remove one of this client's webhooks, with the deliveries still waiting for it.
    Remove(RemoveArgs),
    /// Show a webhook's latest deliveries (newest first): delivered, retrying, given up.
    Deliveries(DeliveriesArgs),
}

/// `tessera webhook add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// Where to POST events (an http:// URL).
    #[arg(long)]
    pub url: String,
    /// The signing secret (16 to 256 bytes).
    #[arg(long, env = "TESSERA_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// File whose first line is the signing secret (keeps it out of `ps`).
    #[arg(long, env = "TESSERA_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// An event to deliver (repeat it; default: every event). One of `job.done`,
    /// `job.failed`, `job.cancelled`, `verification.failed`, `job.dispute_window_closed`.
    #[arg(long = "event", value_name = "EVENT")]
    pub events: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the hook as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tessera webhook list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `tessera webhook remove ID`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The hook's id (from `tessera webhook list`).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `tessera webhook deliveries ID`.
#[derive(Args, Debug)]
pub struct DeliveriesArgs {
    /// The hook's id (from `tessera webhook list`).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `tessera webhook add` will ask for (`--print-config`; the secret is left out).
#[derive(Debug, Serialize)]
pub struct AddConfig {
    /// The coordinator and the client's token.
    pub client: ClientConfig,
    /// Where events go.
    pub url: String,
    /// Which events.
    pub events: Vec<String>,
    /// The signing secret.
    #[serde(skip)]
    pub secret: String,
}

fn client_config(a: &ClientArgs) -> Result<ClientConfig> {
    ClientConfig::new(&a.coordinator, &a.token, &a.token_file).map_err(usage_error)
}

impl AddArgs {
    /// The validated request: a secret is required (given or from a file), and no events
    /// means every event.
    pub fn config(&self) -> Result<AddConfig> {
        let client = client_config(&self.client)?;
        let Some(secret) = secret("secret", &self.secret, &self.secret_file)? else {
            usage!("--secret or --secret-file (TESSERA_WEBHOOK_SECRET): the signing secret is required");
        };
        let events = if self.events.is_empty() {
            WEBHOOK_EVENTS.iter().map(|e| e.to_string()).collect()
        } else {
            self.events.clone()
        };
        Ok(AddConfig {
            client,
            url: self.url.clone(),
            events,
            secret,
        })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// One hook's line: `ID  URL  event,event`.
fn hook_line(h: &WebhookView) -> String {
    format!("{}  {}  {}", h.id, h.url, h.events.join(","))
}

/// One delivery's line: `ID  EVENT  JOB  delivered after N attempts` (or retrying,
/// given up, with the last error).
fn delivery_line(d: &WebhookDelivery) -> String {
    let state = match (d.delivered_ms, d.next_at_ms) {
        (Some(_), _) => format!("delivered after {} attempts", d.attempts),
        (None, Some(_)) => format!("retrying after {} attempts", d.attempts),
        (None, None) => format!("given up after {} attempts", d.attempts),
    };
    match &d.last_error {
        Some(e) if d.delivered_ms.is_none() => {
            format!("{}  {}  {}  {state}: {e}", d.id, d.event, d.job_id)
        }
        _ => format!("{}  {}  {}  {state}", d.id, d.event, d.job_id),
    }
}

/// Run `tessera webhook …`.
pub fn run(command: WebhookCommand, print: bool) -> Result<bool> {
    match command {
        WebhookCommand::Add(a) => {
            let cfg = a.config()?;
            if print_config(print, &cfg)? {
                return Ok(true);
            }
            let hook = runtime()?.block_on(cfg.client.client()?.add_webhook(&WebhookRequest {
                url: cfg.url.clone(),
                secret: cfg.secret.clone(),
                events: cfg.events.clone(),
            }))?;
            if a.json {
                println!("{}", serde_json::to_string(&hook)?);
            } else {
                println!("{}", hook_line(&hook));
            }
        }
        WebhookCommand::List(a) => {
            let cfg = client_config(&a.client)?;
            if print_config(print, &cfg)? {
                return Ok(true);
            }
            let hooks = runtime()?.block_on(cfg.client()?.webhooks())?;
            if a.json {
                println!("{}", serde_json::to_string(&hooks)?);
            } else if hooks.is_empty() {
                println!("no webhooks");
            } else {
                for h in &hooks {
                    println!("{}", hook_line(h));
                }
            }
        }
        WebhookCommand::Remove(a) => {
            let cfg = client_config(&a.client)?;
            if print_config(print, &cfg)? {
                return Ok(true);
            }
            let hook = runtime()?.block_on(cfg.client()?.remove_webhook(&a.id))?;
            println!("removed {}", hook_line(&hook));
        }
        WebhookCommand::Deliveries(a) => {
            let cfg = client_config(&a.client)?;
            if print_config(print, &cfg)? {
                return Ok(true);
            }
            let rows = runtime()?.block_on(cfg.client()?.webhook_deliveries(&a.id))?;
            if a.json {
                println!("{}", serde_json::to_string(&rows)?);
            } else if rows.is_empty() {
                println!("no deliveries");
            } else {
                for d in &rows {
                    println!("{}", delivery_line(d));
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: WebhookCommand,
    }

    fn add(args: &[&str]) -> Result<AddConfig> {
        let mut argv = vec!["t", "add", "--coordinator", "http://127.0.0.1:8700"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            WebhookCommand::Add(a) => a.config(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_needs_a_secret_and_defaults_to_every_event() {
        let cfg = add(&["--token", "t0123", "--url", "http://h/x", "--secret", "s"]).unwrap();
        assert_eq!(cfg.events, WEBHOOK_EVENTS);
        assert_eq!(cfg.secret, "s");
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("\"secret\""), "{json}");
        let cfg = add(&[
            "--token",
            "t0123",
            "--url",
            "http://h/x",
            "--secret",
            "s",
            "--event",
            "job.done",
            "--event",
            "job.failed",
        ])
        .unwrap();
        assert_eq!(cfg.events, ["job.done", "job.failed"]);
        let e = add(&["--token", "t0123", "--url", "http://h/x"]).unwrap_err();
        assert!(e.downcast_ref::<crate::farm::UsageError>().is_some(), "{e}");
        assert!(e.to_string().starts_with("--secret"), "{e}");
    }

    #[test]
    fn a_delivery_line_says_where_it_stands() {
        let mut d = WebhookDelivery {
            id: "d1".into(),
            event: "job.done".into(),
            job_id: "j".into(),
            attempts: 3,
            delivered_ms: None,
            next_at_ms: Some(5),
            last_error: Some("http 503".into()),
        };
        assert_eq!(
            delivery_line(&d),
            "d1  job.done  j  retrying after 3 attempts: http 503"
        );
        d.next_at_ms = None;
        assert_eq!(
            delivery_line(&d),
            "d1  job.done  j  given up after 3 attempts: http 503"
        );
        d.delivered_ms = Some(9);
        assert_eq!(
            delivery_line(&d),
            "d1  job.done  j  delivered after 3 attempts"
        );
    }
}
