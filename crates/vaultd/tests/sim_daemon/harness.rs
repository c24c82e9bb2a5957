//! The whole daemon in-process over the simulated host: the supervisor, the real gRPC service
//! on a Unix socket in a temporary directory (wired as main.rs wires it), and a client that
//! talks to it as vaultctl does.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use vault_api::v1 as pb;
use vault_api::v1::vault_client::VaultClient;
use vault_core::throttle::ThrottlePolicy;
use vault_core::{Millis, PowerPolicy};
use vaultd::access::{AccessPolicy, Groups};
use vaultd::service::VaultService;
use vaultd::sim::{FakeHost, SimControl, SimSettings};
use vaultd::supervisor::{Handle, Supervisor};
use vaultd::throttle::ThrottleRecord;

/// The longest any condition is waited for. Everything here takes milliseconds; this is only
/// there so a broken daemon fails the test instead of hanging it.
pub const SETTLE: Duration = Duration::from_secs(5);

/// The passphrase of the default simulated volume.
pub const PASSPHRASE: &[u8] = b"correct horse battery staple";

#[derive(Debug, Clone)]
pub struct Options {
    pub settings: SimSettings,
    pub policy: PowerPolicy,
    pub power_off_after_drain: bool,
    pub throttle: ThrottlePolicy,
    /// Set the world up before the daemon first looks at it.
    pub prepare: fn(&SimControl),
    /// Keep the session record in this directory (an unclean end's sign), with what the
    /// unlock does after one.
    pub session: Option<(std::path::PathBuf, vault_core::unclean::UncleanStart)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: SimSettings::with_passphrase(PASSPHRASE),
            policy: PowerPolicy {
                // A power reading counts at once: the tests send the readings they mean.
                on_battery_debounce: Millis(0),
                low_hold: Millis(0),
                ..PowerPolicy::default()
            },
            power_off_after_drain: true,
            throttle: ThrottlePolicy::default(),
            prepare: |_| {},
            session: None,
        }
    }
}

/// The group database of the sim: `sim-admins` is the test process's own group, and its
/// account is in it.
#[derive(Debug)]
struct OwnGroup;

impl Groups for OwnGroup {
    fn gid(&self, name: &str) -> Option<u32> {
        (name == "sim-admins").then(|| nix::unistd::getgid().as_raw())
    }

    fn member(&self, uid: u32, gid: u32) -> bool {
        uid == nix::unistd::getuid().as_raw() && gid == nix::unistd::getgid().as_raw()
    }
}

/// A running daemon over a [`FakeHost`].
pub struct Daemon {
    pub control: SimControl,
    pub handle: Handle,
    pub client: VaultClient<Channel>,
    supervisor: Option<JoinHandle<()>>,
    server: JoinHandle<()>,
    stop_server: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let host = Arc::new(FakeHost::new(options.settings));
        let control = host.control();
        (options.prepare)(&control);
        let (supervisor, handle) = Supervisor::new(
            host.clone(),
            options.policy,
            options.power_off_after_drain,
            options.throttle,
            ThrottleRecord::load(dir.path()).0,
        );
        let supervisor = match &options.session {
            Some((dir, start)) => {
                supervisor.with_session(vaultd::session::SessionFile::new(dir), *start)
            }
            None => supervisor,
        };

        // Root is always authorised; the caller's own group is the admin group, so the tests
        // also pass where they do not run as root.
        let access = AccessPolicy::with_groups("sim-admins", "", Arc::new(OwnGroup));
        let service = VaultService {
            handle: handle.clone(),
            host: host.clone(),
            access: Arc::new(RwLock::new(access)),
            describe: Arc::new(host.describe()),
            history: None,
            backups: None,
        };
        let socket = dir.path().join("vaultd.sock");
        let listener = UnixListener::bind(&socket).expect("bind the control socket");
        let stop_server = CancellationToken::new();
        let server = tokio::spawn(vaultd::control::serve(
            listener,
            None,
            service,
            stop_server.clone(),
        ));

        // The simulated Docker events and mountinfo changes.
        host.feed_observations(handle.tx.clone());
        let (ready_tx, ready) = oneshot::channel();
        let supervisor = tokio::spawn(supervisor.run(move || {
            let _ = ready_tx.send(());
        }));
        tokio::time::timeout(SETTLE, ready)
            .await
            .expect("the supervisor's first reconciliation")
            .expect("the supervisor is ready");
        let client = connect(&socket).await;
        Self {
            control,
            handle,
            client,
            supervisor: Some(supervisor),
            server,
            stop_server,
            _dir: dir,
        }
    }

    pub async fn status(&mut self) -> pb::StatusReply {
        self.client
            .status(pb::StatusRequest {})
            .await
            .expect("status answers")
            .into_inner()
    }

    /// Poll status until `ready` holds; fails the test with the last status after [`SETTLE`].
    pub async fn wait_for(
        &mut self,
        what: &str,
        ready: impl Fn(&pb::StatusReply) -> bool,
    ) -> pb::StatusReply {
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let status = self.status().await;
            if ready(&status) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {SETTLE:?} for {what}; status is {status:#?}\nsim events: {:#?}",
                self.control.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Wait until the vault rests in `state` (no step under way).
    pub async fn wait_idle(&mut self, state: pb::VaultState) -> pb::StatusReply {
        self.wait_for(&format!("{} and idle", state.as_str_name()), |s| {
            s.state() == state && s.phase == "idle"
        })
        .await
    }

    pub async fn unlock(
        &mut self,
        passphrase: &[u8],
        no_start: bool,
    ) -> Result<pb::CommandReply, tonic::Status> {
        self.client
            .unlock(pb::UnlockRequest {
                passphrase: passphrase.to_vec(),
                no_start,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn lock(&mut self) -> Result<pb::CommandReply, tonic::Status> {
        self.client
            .lock(pb::LockRequest {})
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn stop(&mut self) -> Result<pb::CommandReply, tonic::Status> {
        self.client
            .stop(pb::StopRequest {})
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn start_stack(&mut self) -> Result<pb::CommandReply, tonic::Status> {
        self.client
            .start(pb::StartRequest {})
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn check(&mut self) -> Vec<pb::Finding> {
        self.client
            .check(pb::CheckRequest {})
            .await
            .expect("check answers")
            .into_inner()
            .findings
    }

    /// Unlock with the right passphrase and wait for RUNNING.
    pub async fn unlock_to_running(&mut self) -> pb::StatusReply {
        let reply = self.unlock(PASSPHRASE, false).await.expect("unlock");
        assert_eq!(reply.outcome(), pb::command_reply::Outcome::Accepted);
        self.wait_idle(pb::VaultState::Running).await
    }

    /// Wait for the supervisor's `run` to return.
    pub async fn supervisor_ended(&mut self) {
        let supervisor = self.supervisor.take().expect("the supervisor runs");
        tokio::time::timeout(SETTLE, supervisor)
            .await
            .expect("the supervisor's run() returns")
            .expect("the supervisor did not panic");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_server.cancel();
        self.server.abort();
        if let Some(supervisor) = &self.supervisor {
            supervisor.abort();
        }
    }
}

/// A channel over the socket, as vaultctl opens it.
async fn connect(socket: &Path) -> VaultClient<Channel> {
    let stream = UnixStream::connect(socket)
        .await
        .expect("connect to the socket");
    let slot = Arc::new(Mutex::new(Some(stream)));
    let channel = Endpoint::from_static("http://vaultd.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let stream = slot.lock().ok().and_then(|mut s| s.take());
            async move {
                stream
                    .map(TokioIo::new)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "used"))
            }
        }))
        .await
        .expect("a channel over the socket");
    VaultClient::new(channel)
}

/// Whether status lists an active alarm of `kind`.
pub fn has_alarm(status: &pb::StatusReply, kind: &str) -> bool {
    status
        .active_alarms
        .iter()
        .any(|a| a.starts_with(&format!("{kind}: ")))
}

/// The observation status shows (present once the daemon has looked).
pub fn observed(status: &pb::StatusReply) -> &pb::Observed {
    status
        .observed
        .as_ref()
        .expect("status carries an observation")
}
