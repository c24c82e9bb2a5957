//! The UPSes named in `[nut]`: one task per UPS polls upsd (it has no push) and hands each
//! reading, or why there is none, to the supervisor. The core judges each UPS by its own rules
//! beside the laptop's battery; this task decides nothing.

use std::time::Duration;

use vault_config::NutConfig;
use vault_core::Event;
use vault_core::ups::{UpsReading, UpsUpdate};
use vault_nut::{Client, NutError, UpsAddress};

use crate::supervisor::Msg;

use super::{Tasks, latest_feed};

const PASSWORD: vault_keyfile::Kind = vault_keyfile::Kind {
    what: "NUT password",
    key: "nut.password_file",
};

/// How a UPS follower logs in, if upsd asks for a user.
#[derive(Debug, Clone)]
struct Login {
    username: String,
    password: Result<vault_keyfile::Secret, String>,
}

fn to_msg(update: UpsUpdate) -> Msg {
    Msg::Event(Event::Ups(update))
}

fn reading(r: vault_nut::UpsReading) -> UpsReading {
    UpsReading {
        status: r.status,
        online: r.online,
        on_battery: r.on_battery,
        low_battery: r.low_battery,
        forced_shutdown: r.forced_shutdown,
        charge_percent: r.charge_percent,
        runtime_secs: r.runtime_secs,
    }
}

/// Follow every configured UPS.
pub fn spawn(tasks: &Tasks, tx: tokio::sync::mpsc::Sender<Msg>, config: &NutConfig) {
    // Read once at start (a restart applies a change); a file vaultd cannot use is said in
    // the UPS's gone alarm, every poll, rather than stopping the daemon.
    let login = config.username.clone().map(|username| Login {
        password: config
            .password_file
            .as_deref()
            .ok_or_else(|| "nut.password_file is not set".to_owned())
            .and_then(|path| vault_keyfile::read(path, PASSWORD).map_err(|e| e.to_string())),
        username,
    });
    let every = Duration::from_millis(config.poll_interval_ms);
    let timeout = Duration::from_millis(config.request_timeout_ms);
    for name in &config.upses {
        let Ok(address) = name.parse::<UpsAddress>() else {
            // The config check parsed it already; a name that does not parse cannot be here.
            continue;
        };
        let feed = latest_feed(tasks, tx.clone(), to_msg);
        let login = login.clone();
        let name = name.clone();
        tasks.spawn(async move {
            follow(&address, &name, login.as_ref(), every, timeout, |update| {
                feed.send_replace(Some(update));
                !feed.is_closed()
            })
            .await;
        });
    }
}

/// Poll one UPS every `every` until `send` says nobody listens. A connection is kept between
/// polls and made again after any error.
async fn follow(
    address: &UpsAddress,
    name: &str,
    login: Option<&Login>,
    every: Duration,
    timeout: Duration,
    mut send: impl FnMut(UpsUpdate) -> bool,
) {
    let mut client: Option<Client> = None;
    let mut said: Option<String> = None;
    let mut ticks = tokio::time::interval(every);
    // A poll that ran long is not made up for with a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = match client.as_mut() {
            Some(c) => c.reading(&address.ups).await.map_err(|e| explain(&e)),
            None => match connect(address, login, timeout).await {
                Ok(c) => client
                    .insert(c)
                    .reading(&address.ups)
                    .await
                    .map_err(|e| explain(&e)),
                Err(why) => Err(why),
            },
        };
        let update = match result {
            Ok(r) => {
                if said.take().is_some() {
                    tracing::info!(ups = %name, status = %r.status, "the UPS answers again");
                }
                UpsUpdate::Reading {
                    name: name.to_owned(),
                    reading: reading(r),
                }
            }
            Err(why) => {
                // A broken or refused connection is made again at the next poll.
                client = None;
                if said.as_ref() != Some(&why) {
                    tracing::warn!(ups = %name, "{why}");
                    said = Some(why.clone());
                }
                UpsUpdate::Gone {
                    name: name.to_owned(),
                    why,
                }
            }
        };
        if !send(update) {
            return;
        }
    }
}

/// A connection, logged in where configured; or why not, in the owner's words.
async fn connect(
    address: &UpsAddress,
    login: Option<&Login>,
    timeout: Duration,
) -> Result<Client, String> {
    let mut client = Client::connect(&address.host, address.port, timeout)
        .await
        .map_err(|e| explain(&e))?;
    if let Some(login) = login {
        let password = login.password.as_ref().map_err(Clone::clone)?;
        client
            .authenticate(&login.username, password.expose())
            .await
            .map_err(|e| explain(&e))?;
        // upsd checks the password only here; a monitor that never logs in is never refused.
        client.login(&address.ups).await.map_err(|e| explain(&e))?;
    }
    Ok(client)
}

/// What the owner should read in the alarm: upsd's codes with what they mean here.
fn explain(error: &NutError) -> String {
    match error {
        NutError::Server(code) => match code.as_str() {
            "DATA-STALE" => {
                "upsd says the driver's data is stale (the UPS or its driver does not answer)"
                    .into()
            }
            "DRIVER-NOT-CONNECTED" => "upsd has no connection to the UPS's driver".into(),
            "UNKNOWN-UPS" => "upsd knows no UPS of that name (see `upsc -l`)".into(),
            "ACCESS-DENIED" => format!(
                "upsd refuses the login (ERR {code}): check nut.username and nut.password_file against upsd.users (the user needs an `upsmon` line)"
            ),
            "USERNAME-REQUIRED" | "PASSWORD-REQUIRED" => format!(
                "upsd refuses vaultd (ERR {code}): set nut.username and nut.password_file to a user of upsd.users"
            ),
            "INVALID-PASSWORD" | "INVALID-USERNAME" => format!(
                "upsd refuses the login (ERR {code}): check nut.username and nut.password_file"
            ),
            _ => error.to_string(),
        },
        other => other.to_string(),
    }
}
