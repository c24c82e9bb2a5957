//! The logind adapter against a real D-Bus daemon with python3-dbusmock's logind template: the
//! delay inhibitor is listed while its fd is held and gone once it is closed, a
//! `PrepareForShutdown(true)` / `PrepareForSleep(true)` from logind reaches the follower, and
//! `PowerOff(false)` is what the mock records. (The daemon's use of it — hold while the volume is
//! open, drain on the announcement, power off after a power-loss drain — is proven in the
//! full-system guest against the real logind.)

use std::time::Duration;

use vault_integration_tests::{SystemBus, require};
use vault_power::logind::{Announcement, Logind};

const LOGIND: &str = "org.freedesktop.login1";
const PATH: &str = "/org/freedesktop/login1";

fn inhibitors(bus: &SystemBus) -> String {
    bus.call(&[
        LOGIND,
        PATH,
        "org.freedesktop.login1.Manager",
        "ListInhibitors",
    ])
}

#[test]
fn inhibitor_announcements_and_power_off_against_the_logind_mock() {
    if !require(
        "dbus-daemon and Debian's python3-dbusmock",
        SystemBus::available(),
    ) {
        return;
    }
    let mut bus = SystemBus::start();
    bus.mock("logind", "{}", LOGIND);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let address = bus.address.clone();
    rt.block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .expect("address")
            .build()
            .await
            .expect("connect");
        let logind = Logind::new(&conn).await.expect("logind");

        let fd = logind
            .inhibit("the photo vault drains first")
            .await
            .expect("inhibit");
        let listed = tokio::task::block_in_place(|| inhibitors(&bus));
        assert!(listed.contains("\"shutdown:sleep\" \"vaultd\""), "{listed}");
        assert!(listed.contains("\"delay\""), "{listed}");
        drop(fd);
        let mut released = false;
        for _ in 0..50 {
            if !tokio::task::block_in_place(|| inhibitors(&bus)).contains("vaultd") {
                released = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(released, "the inhibitor outlived its fd");

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let follower = logind.clone();
        let following = tokio::spawn(async move {
            let _ = follower
                .follow(move |a| {
                    let _ = tx.send(a);
                })
                .await;
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (signal, start) in [
            ("PrepareForShutdown", "true"),
            ("PrepareForSleep", "true"),
            ("PrepareForSleep", "false"),
        ] {
            tokio::task::block_in_place(|| {
                bus.call(&[
                    LOGIND,
                    PATH,
                    "org.freedesktop.DBus.Mock",
                    "EmitSignal",
                    "sssav",
                    "org.freedesktop.login1.Manager",
                    signal,
                    "b",
                    "1",
                    "b",
                    start,
                ])
            });
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            let a = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an announcement")
                .expect("open");
            seen.push(a);
        }
        assert_eq!(
            seen,
            [
                Announcement::GoingDown { sleep: false },
                Announcement::GoingDown { sleep: true },
                Announcement::Resumed
            ]
        );
        following.abort();

        logind.power_off().await.expect("PowerOff");
        let calls = tokio::task::block_in_place(|| {
            bus.call(&[
                LOGIND,
                PATH,
                "org.freedesktop.DBus.Mock",
                "GetMethodCalls",
                "s",
                "PowerOff",
            ])
        });
        assert!(
            calls.contains("false"),
            "PowerOff(false) not recorded: {calls}"
        );
    });
}
