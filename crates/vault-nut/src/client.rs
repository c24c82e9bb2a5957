//! One connection to upsd. Every request has a deadline and every answer line is bounded, so a
//! upsd that hangs or floods never holds the poll up or grows vaultd's memory.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::proto::{self, MAX_LINE_BYTES, VarList};
use crate::{NutError, UpsReading};

#[derive(Debug)]
pub struct Client {
    stream: BufReader<TcpStream>,
    address: String,
    timeout: Duration,
}

impl Client {
    /// Connect to upsd at `host:port`, within `timeout`.
    pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<Self, NutError> {
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                return Err(NutError::Connect {
                    address,
                    why: e.to_string(),
                });
            }
            Err(_) => return Err(timed_out(&address, timeout)),
        };
        // Polls are small; waiting to fill a segment would only add latency.
        let _ = stream.set_nodelay(true);
        Ok(Self {
            stream: BufReader::new(stream),
            address,
            timeout,
        })
    }

    /// `USERNAME` and `PASSWORD`: needed where upsd's ACLs ask for a user (upsd.users). The
    /// password goes only onto the socket, never into an error (upsd's answer is an ERR code).
    pub async fn authenticate(&mut self, username: &str, password: &str) -> Result<(), NutError> {
        let timeout = self.timeout;
        let address = self.address.clone();
        tokio::time::timeout(timeout, async {
            self.send(&format!("USERNAME {}\n", proto::quote(username)))
                .await?;
            self.expect_ok().await?;
            self.send(&format!("PASSWORD {}\n", proto::quote(password)))
                .await?;
            self.expect_ok().await
        })
        .await
        .map_err(|_| timed_out(&address, timeout))?
    }

    /// `LOGIN <ups>`: tell upsd this host is powered by the UPS (after [`Client::authenticate`]).
    /// upsd checks the password here, and counts the client in the UPS's NUMLOGINS: a NUT
    /// primary that sets FSD waits (up to its HOSTSYNC) for the count to fall, which it does
    /// when vaultd, done draining, is stopped and the connection closes.
    pub async fn login(&mut self, ups: &str) -> Result<(), NutError> {
        let timeout = self.timeout;
        let address = self.address.clone();
        tokio::time::timeout(timeout, async {
            self.send(&format!("LOGIN {}\n", proto::quote(ups))).await?;
            self.expect_ok().await
        })
        .await
        .map_err(|_| timed_out(&address, timeout))?
    }

    /// `LIST VAR <ups>`: every variable of the UPS.
    pub async fn list_vars(&mut self, ups: &str) -> Result<BTreeMap<String, String>, NutError> {
        let timeout = self.timeout;
        let address = self.address.clone();
        tokio::time::timeout(timeout, async {
            self.send(&format!("LIST VAR {}\n", proto::quote(ups)))
                .await?;
            let mut list = VarList::new(ups);
            loop {
                let line = self.line().await?;
                if list.feed(&line)? {
                    return Ok(std::mem::take(&mut list.vars));
                }
            }
        })
        .await
        .map_err(|_| timed_out(&address, timeout))?
    }

    /// The UPS's reading, from one `LIST VAR`.
    pub async fn reading(&mut self, ups: &str) -> Result<UpsReading, NutError> {
        UpsReading::from_vars(&self.list_vars(ups).await?)
    }

    async fn send(&mut self, command: &str) -> Result<(), NutError> {
        self.stream
            .get_mut()
            .write_all(command.as_bytes())
            .await
            .map_err(|e| NutError::Io(e.to_string()))
    }

    async fn expect_ok(&mut self) -> Result<(), NutError> {
        let line = self.line().await?;
        let words = proto::split_words(&line)?;
        if let Some(error) = proto::error_of(&words) {
            return Err(error);
        }
        match words.first() {
            Some(ok) if ok == "OK" => Ok(()),
            _ => Err(NutError::Malformed(format!("expected OK, got {line:?}"))),
        }
    }

    /// One line, without its end; at most [`MAX_LINE_BYTES`].
    async fn line(&mut self) -> Result<String, NutError> {
        let mut bytes = Vec::new();
        let limit = u64::try_from(MAX_LINE_BYTES + 1).unwrap_or(u64::MAX);
        let read = (&mut self.stream)
            .take(limit)
            .read_until(b'\n', &mut bytes)
            .await
            .map_err(|e| NutError::Io(e.to_string()))?;
        if read == 0 {
            return Err(NutError::Closed);
        }
        if bytes.last() != Some(&b'\n') {
            return Err(if bytes.len() > MAX_LINE_BYTES {
                NutError::Malformed(format!("a line of more than {MAX_LINE_BYTES} bytes"))
            } else {
                NutError::Closed
            });
        }
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        String::from_utf8(bytes).map_err(|_| NutError::Malformed("a line that is not UTF-8".into()))
    }
}

fn timed_out(address: &str, timeout: Duration) -> NutError {
    NutError::Timeout {
        address: address.to_owned(),
        millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A upsd stand-in that answers each line it reads with the next canned answer.
    async fn serve(answers: Vec<&'static str>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            for answer in answers {
                if lines.next_line().await.unwrap().is_none() {
                    return;
                }
                write.write_all(answer.as_bytes()).await.unwrap();
            }
            // Keep the socket open and silent: a hang, for the timeout test.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        port
    }

    #[tokio::test]
    async fn a_list_is_read_and_an_err_is_told() {
        let port = serve(vec![
            "OK\n",
            "OK\n",
            "OK\n",
            "BEGIN LIST VAR u\nVAR u ups.status \"OB LB\"\nVAR u battery.charge \"9\"\nEND LIST VAR u\n",
            "ERR DATA-STALE\n",
        ])
        .await;
        let mut c = Client::connect("127.0.0.1", port, Duration::from_secs(2))
            .await
            .unwrap();
        c.authenticate("monitor", "pass with \"quotes\"")
            .await
            .unwrap();
        c.login("u").await.unwrap();
        let r = c.reading("u").await.unwrap();
        assert!(r.low_battery && r.on_battery);
        assert_eq!(r.charge_percent, Some(9.0));
        assert_eq!(
            c.reading("u").await.unwrap_err(),
            NutError::Server("DATA-STALE".into())
        );
    }

    #[tokio::test]
    async fn a_silent_upsd_times_out_and_a_flood_is_cut() {
        let port = serve(vec![]).await;
        let mut c = Client::connect("127.0.0.1", port, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(matches!(
            c.list_vars("u").await,
            Err(NutError::Timeout { .. })
        ));

        let flood: &'static str = Box::leak(format!("{}\n", "x".repeat(10_000)).into_boxed_str());
        let port = serve(vec![flood]).await;
        let mut c = Client::connect("127.0.0.1", port, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(
            matches!(c.list_vars("u").await, Err(NutError::Malformed(m)) if m.contains("more than"))
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(matches!(
            Client::connect("127.0.0.1", port, Duration::from_secs(1)).await,
            Err(NutError::Connect { .. })
        ));
    }
}
