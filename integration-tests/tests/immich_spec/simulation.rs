//! The simulation behind the answers: connections kept alive, jobs that finish over time, the
//! photos written while a queue runs.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::spec::{Api, assert_valid, response_schema};
use crate::wire::{
    KEY, Server, command, connect, get_queue, ok, poll, read_response, request_bytes, send_raw,
    set_paused, stat,
};

#[test]
fn one_connection_serves_several_requests() {
    for api in Api::BOTH {
        let server = Server::start(api, &[]);
        let stream = connect(&server.addr);
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let pause = json!({"isPaused": true});
        for (method, path, body) in [
            ("GET", "/api/server/ping", None),
            ("GET", "/api/queues/ocr", None),
            ("PUT", "/api/queues/ocr", Some(&pause)),
        ] {
            writer
                .write_all(&request_bytes(method, path, Some(KEY), body, false))
                .expect("write");
            let response = read_response(&mut reader).expect("an answer");
            assert_eq!(response.status, 200, "{method} {path}");
            assert_eq!(response.header("connection"), Some("keep-alive"));
        }
        writer
            .write_all(&request_bytes(
                "GET",
                "/api/queues/ocr",
                Some(KEY),
                None,
                true,
            ))
            .expect("write");
        let response = read_response(&mut reader).expect("an answer");
        assert_eq!(response.header("connection"), Some("close"));
        assert_eq!(response.json()["isPaused"], true);
        assert!(
            read_response(&mut reader).is_none(),
            "closed after Connection: close"
        );

        // A chunked body with Expect: 100-continue, as some clients send it.
        let stream = connect(&server.addr);
        let mut writer = stream.try_clone().expect("clone");
        let mut reader = BufReader::new(stream);
        let head = format!(
            "PUT /api/jobs/ocr HTTP/1.1\r\nx-api-key: {KEY}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).expect("write head");
        assert_eq!(read_response(&mut reader).expect("100").status, 100);
        writer
            .write_all(b"9\r\n{\"command\r\na\r\n\":\"resume\"\r\n1\r\n}\r\n0\r\n\r\n")
            .expect("write chunks");
        let response = read_response(&mut reader).expect("an answer");
        assert_eq!(response.status, 200);
        let json = response.json();
        assert_valid(
            api,
            "chunked PUT /jobs/{name}",
            response_schema(api, "/jobs/{name}", "put", 200),
            &json,
            &[],
        );
        assert_eq!(json["queueStatus"]["isPaused"], false);

        // HTTP/1.0 closes unless asked to keep alive.
        let response =
            send_raw(&server.addr, b"GET /api/server/ping HTTP/1.0\r\n\r\n").expect("answer");
        assert_eq!(response.header("connection"), Some("close"));
        assert_eq!(response.json(), json!({"res": "pong"}));
    }
}

#[test]
fn jobs_finish_while_paused_and_waiting_ones_wait_for_resume() {
    let server = Server::start(
        Api::V2_4_1,
        &[
            "--job-ms",
            "300",
            "--active",
            "thumbnailGeneration=1,smartSearch=2",
            "--waiting",
            "thumbnailGeneration=3,ocr=2",
            "--paused",
            "ocr",
        ],
    );
    const Q: &str = "thumbnailGeneration";
    // Every job is somewhere, always, and at most one runs (--active 1, concurrency 1).
    let check = |queue: &Value| {
        let total = ["active", "completed", "waiting", "paused"]
            .iter()
            .map(|f| stat(queue, f))
            .sum::<u64>();
        assert_eq!(total, 4, "{queue}");
        assert!(stat(queue, "active") <= 1, "{queue}");
        assert_eq!(stat(queue, "delayed"), 0);
        assert_eq!(stat(queue, "failed"), 0);
    };

    let paused = set_paused(&server, Q, true);
    check(&paused);
    // The running job finishes while paused; nothing new starts.
    let idle = poll(|| {
        let queue = get_queue(&server, Q);
        check(&queue);
        (stat(&queue, "active") == 0).then_some(queue)
    })
    .expect("the active job finishes while the queue is paused");
    assert_eq!(idle["isPaused"], true);
    assert_eq!(
        stat(&idle, "waiting"),
        0,
        "a paused queue's jobs count as paused"
    );
    let completed = stat(&idle, "completed");
    assert!(completed >= 1, "{idle}");
    let legacy = ok(&server, "GET", "/jobs", None, None);
    assert_eq!(
        legacy[Q]["queueStatus"],
        json!({"isActive": false, "isPaused": true})
    );
    thread::sleep(Duration::from_millis(800));
    let still = get_queue(&server, Q);
    check(&still);
    assert_eq!(
        stat(&still, "active"),
        0,
        "no job starts while paused: {still}"
    );
    assert_eq!(stat(&still, "completed"), completed, "{still}");

    // After resume (legacy command, same queue) the waiting jobs run one at a time.
    command(&server, Q, "resume");
    let done = poll(|| {
        let queue = get_queue(&server, Q);
        check(&queue);
        (stat(&queue, "completed") == 4).then_some(queue)
    })
    .expect("all jobs finish after resume");
    assert_eq!(
        stat(&done, "active") + stat(&done, "waiting") + stat(&done, "paused"),
        0
    );

    // Two initial active jobs of a running queue finish too.
    let smart = poll(|| {
        let queue = get_queue(&server, "smartSearch");
        (stat(&queue, "completed") == 2).then_some(queue)
    })
    .expect("smartSearch's active jobs finish");
    assert_eq!(stat(&smart, "active"), 0);

    // A queue paused from the start never started its waiting jobs.
    let ocr = get_queue(&server, "ocr");
    assert_eq!(ocr["isPaused"], true);
    assert_eq!(
        (
            stat(&ocr, "active"),
            stat(&ocr, "completed"),
            stat(&ocr, "waiting"),
            stat(&ocr, "paused")
        ),
        (0, 0, 0, 2)
    );
    assert_eq!(legacy["ocr"]["jobCounts"]["paused"], 2);
}

fn photos(upload: &Path) -> Vec<PathBuf> {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(upload)
        .expect("read upload")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("photo-") && n.ends_with(".jpg"))
        })
        .collect();
    photos.sort();
    photos
}

fn leftovers(upload: &Path) -> usize {
    std::fs::read_dir(upload)
        .expect("read upload")
        .filter(|e| {
            e.as_ref()
                .ok()
                .and_then(|e| e.file_name().into_string().ok())
                .is_some_and(|n| n.ends_with(".tmp"))
        })
        .count()
}

fn photo_number(photo: &Path) -> u64 {
    photo
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("photo-")?.strip_suffix(".jpg")?.parse().ok())
        .expect("photo-<n>.jpg")
}

#[test]
fn data_dir_gets_markers_and_photos_until_everything_is_paused() {
    for api in Api::BOTH {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let data_arg = data.to_str().expect("UTF-8 path");
        let upload = data.join("upload");
        let server = Server::start(api, &["--data-dir", data_arg, "--write-ms", "50"]);
        for folder in [
            "upload",
            "thumbs",
            "encoded-video",
            "library",
            "profile",
            "backups",
        ] {
            let marker = data.join(folder).join(".immich");
            let meta =
                std::fs::metadata(&marker).unwrap_or_else(|e| panic!("{}: {e}", marker.display()));
            assert!(meta.is_file() && meta.len() == 0, "{}", marker.display());
        }

        poll(|| (photos(&upload).len() >= 3).then_some(())).expect("photos are written");
        let first = std::fs::read(upload.join("photo-1.jpg")).expect("photo-1.jpg");
        assert_eq!(first.len(), 4096);
        assert!(first.starts_with(b"VAULTD-TEST-PHOTO 1\nVAULTD-TEST-PHOTO 1\n"));

        // Pause every queue, as vaultd does before stopping the stack: the writes stop.
        let list = ok(&server, "GET", "/queues", None, None);
        for queue in list.as_array().expect("an array") {
            let name = queue["name"].as_str().expect("a name");
            assert_eq!(set_paused(&server, name, true)["isPaused"], true);
        }
        server.assert_logged("PUT /api/queues/", api.queues().len());
        let before = photos(&upload);
        thread::sleep(Duration::from_millis(500));
        assert_eq!(
            photos(&upload),
            before,
            "no photo is written while everything is paused"
        );
        poll(|| (leftovers(&upload) == 0).then_some(())).expect("no temporary file is left");
        for photo in &before {
            let len = std::fs::metadata(photo).expect("photo").len();
            assert_eq!(len, 4096, "{} is complete", photo.display());
        }

        // One queue running again is enough to write.
        command(&server, "library", "resume");
        poll(|| (photos(&upload).len() > before.len()).then_some(())).expect("writes resume");
        drop(server);

        // A restart on the same folder goes on numbering instead of overwriting.
        let last = photos(&upload)
            .iter()
            .map(|p| photo_number(p))
            .max()
            .expect("photos");
        let _again = Server::start(api, &["--data-dir", data_arg, "--write-ms", "50"]);
        poll(|| {
            photos(&upload)
                .iter()
                .any(|p| photo_number(p) == last + 1)
                .then_some(())
        })
        .expect("the restarted server writes the next number");
        assert_eq!(
            std::fs::read(upload.join("photo-1.jpg")).expect("photo-1.jpg"),
            first,
            "earlier photos are kept"
        );
    }
}
