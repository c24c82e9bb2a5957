//! LUKS drives coming and going, as udev announces them: a block device whose filesystem type
//! udev's blkid builtin found to be `crypto_LUKS`, by its header UUID. The drives present at
//! the start are reported first. Blocking (poll(2) without a timeout): run on a thread of its own.

use std::io;
use std::os::fd::AsRawFd;

/// A LUKS device appeared or went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveEvent {
    /// The LUKS header's UUID, lowercase.
    pub uuid: String,
    pub present: bool,
}

fn luks_uuid(device: &udev::Device) -> Option<String> {
    let fs_type = device.property_value("ID_FS_TYPE")?;
    if fs_type != "crypto_LUKS" {
        return None;
    }
    let uuid = device.property_value("ID_FS_UUID")?.to_str()?;
    Some(uuid.to_ascii_lowercase())
}

/// What an event of the block subsystem means for LUKS drives, if anything.
fn event_of(event: &udev::Event) -> Option<DriveEvent> {
    let present = match event.event_type() {
        udev::EventType::Add | udev::EventType::Change => true,
        udev::EventType::Remove => false,
        _ => return None,
    };
    Some(DriveEvent {
        uuid: luks_uuid(&event.device())?,
        present,
    })
}

/// Call `on` for every LUKS drive present now, then for each one plugged in or out, until `on`
/// returns false.
pub fn follow_blocking(mut on: impl FnMut(DriveEvent) -> bool) -> io::Result<()> {
    // The monitor first, so that nothing plugged in during the enumeration is missed.
    let socket = udev::MonitorBuilder::new()?
        .match_subsystem("block")?
        .listen()?;
    let mut enumerator = udev::Enumerator::new()?;
    enumerator.match_subsystem("block")?;
    for device in enumerator.scan_devices()? {
        if let Some(uuid) = luks_uuid(&device)
            && !on(DriveEvent {
                uuid,
                present: true,
            })
        {
            return Ok(());
        }
    }
    let mut pollfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd for the monitor socket, which outlives the call.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, -1) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in socket.iter() {
            if let Some(drive) = event_of(&event)
                && !on(drive)
            {
                return Ok(());
            }
        }
    }
}
