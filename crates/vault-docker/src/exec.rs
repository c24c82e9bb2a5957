//! Asking a container: a command run inside it (`pg_isready`, a `psql` query) and its log
//! since a time. Both bounded in time and in what is kept of their output: a container's
//! words are untrusted input.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::LogsOptionsBuilder;
use tokio_stream::StreamExt;

use crate::{DockerError, Stack};

/// The most kept of a command's output or a log: the tail, where the last words are.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// What a command run in a container said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the engine did not say (the command was cut short).
    pub exit_code: Option<i64>,
    /// stdout and stderr together, at most [`OUTPUT_LIMIT`] bytes (the tail), lossy UTF-8.
    pub output: String,
}

/// What a command whose output went to a file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecToFile {
    pub exit_code: Option<i64>,
    /// Bytes written to the file.
    pub bytes: u64,
    /// The tail of what it said on stderr.
    pub stderr: String,
}

/// Keep the last `limit` bytes of `buffer`.
fn keep_tail(buffer: &mut Vec<u8>, limit: usize) {
    if buffer.len() > limit {
        buffer.drain(..buffer.len() - limit);
    }
}

/// An attached exec's output, as the engine streams it.
type ExecStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// How an exec is named in errors.
fn exec_op(id: &str, argv: &[&str]) -> String {
    format!(
        "run {} in {id}",
        argv.first().copied().unwrap_or("a command")
    )
}

impl Stack {
    /// Create and start `argv` in the running container `id` (as `user` when given), attached:
    /// the exec's id, and its output unless the engine gave none.
    async fn start_attached(
        &self,
        id: &str,
        argv: &[&str],
        user: Option<&str>,
        op: &str,
    ) -> Result<(String, Option<ExecStream>), DockerError> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv.iter().map(|a| (*a).to_owned()).collect()),
            user: user.map(str::to_owned),
            ..ExecConfig::default()
        };
        let created = self
            .docker
            .create_exec(id, config)
            .await
            .map_err(self.api(op))?;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let output = match self
            .docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(self.api(op))?
        {
            StartExecResults::Attached { output, .. } => Some(output),
            StartExecResults::Detached => None,
        };
        Ok((created.id, output))
    }

    /// The exit code of a finished exec (`None` when the engine does not say).
    async fn exit_code(&self, exec: &str, op: &str) -> Result<Option<i64>, DockerError> {
        let inspected = self.docker.inspect_exec(exec).await.map_err(self.api(op))?;
        Ok(inspected.exit_code)
    }

    fn timed_out(&self, limit: Duration) -> DockerError {
        DockerError::Timeout {
            socket: self.socket.clone(),
            timeout: limit,
        }
    }

    /// Run `argv` in the running container `id` (as `user` when given), within `limit`.
    pub async fn exec(
        &self,
        id: &str,
        argv: &[&str],
        user: Option<&str>,
        limit: Duration,
    ) -> Result<ExecOutput, DockerError> {
        let op = exec_op(id, argv);
        let run = async {
            let (exec, output) = self.start_attached(id, argv, user, &op).await?;
            let mut buffer = Vec::new();
            if let Some(mut output) = output {
                while let Some(chunk) = output.next().await {
                    let chunk = chunk.map_err(self.api(&op))?;
                    buffer.extend_from_slice(&chunk.into_bytes());
                    keep_tail(&mut buffer, OUTPUT_LIMIT);
                }
            }
            Ok(ExecOutput {
                exit_code: self.exit_code(&exec, &op).await?,
                output: String::from_utf8_lossy(&buffer).into_owned(),
            })
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| self.timed_out(limit))?
    }

    /// Run `argv` in the running container `id` (as `user` when given) with its stdout written
    /// to `into` (a new file, created 0600 and never through a symlink, fsynced before this
    /// returns), within `limit`. For a dump
    /// of unbounded size: only stderr is kept in memory, its tail. `into` is left with what
    /// arrived, whatever the outcome; the caller decides what a partial file is.
    pub async fn exec_to_file(
        &self,
        id: &str,
        argv: &[&str],
        user: Option<&str>,
        limit: Duration,
        into: &std::path::Path,
    ) -> Result<ExecToFile, DockerError> {
        use std::os::unix::fs::OpenOptionsExt;
        use tokio::io::AsyncWriteExt;
        let op = exec_op(id, argv);
        let file_error = |e: std::io::Error| DockerError::Api {
            op: op.clone(),
            detail: format!("cannot write {}: {e}", into.display()),
        };
        // A new file only, never through a symlink: what `into` names must be this dump's.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(into)
            .map_err(file_error)?;
        let mut file = tokio::fs::File::from_std(file);
        let run = async {
            let (exec, output) = self.start_attached(id, argv, user, &op).await?;
            let mut stderr = Vec::new();
            let mut bytes = 0u64;
            if let Some(mut output) = output {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(self.api(&op))? {
                        LogOutput::StdOut { message } => {
                            file.write_all(&message).await.map_err(file_error)?;
                            bytes += u64::try_from(message.len()).unwrap_or(u64::MAX);
                        }
                        other => {
                            stderr.extend_from_slice(&other.into_bytes());
                            keep_tail(&mut stderr, 4096);
                        }
                    }
                }
            }
            file.sync_all().await.map_err(file_error)?;
            Ok(ExecToFile {
                exit_code: self.exit_code(&exec, &op).await?,
                bytes,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        tokio::time::timeout(limit, run)
            .await
            .map_err(|_| self.timed_out(limit))?
    }

    /// The container's log (stdout and stderr) since `since_unix`, the last
    /// [`OUTPUT_LIMIT`] bytes of it, within `limit`.
    pub async fn logs_since(
        &self,
        id: &str,
        since_unix: i64,
        limit: Duration,
    ) -> Result<String, DockerError> {
        let op = format!("read the log of {id}");
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .since(i32::try_from(since_unix).unwrap_or(i32::MAX))
            .build();
        let read = async {
            let mut stream = self.docker.logs(id, Some(options));
            let mut buffer = Vec::new();
            while let Some(chunk) = stream.next().await {
                let bytes = match chunk.map_err(self.api(&op))? {
                    LogOutput::StdOut { message }
                    | LogOutput::StdErr { message }
                    | LogOutput::Console { message }
                    | LogOutput::StdIn { message } => message,
                };
                buffer.extend_from_slice(&bytes);
                keep_tail(&mut buffer, OUTPUT_LIMIT);
            }
            Ok(String::from_utf8_lossy(&buffer).into_owned())
        };
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| self.timed_out(limit))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_tail_is_kept() {
        let mut b = b"0123456789".to_vec();
        keep_tail(&mut b, 4);
        assert_eq!(b, b"6789");
        keep_tail(&mut b, 10);
        assert_eq!(b, b"6789");
    }
}
