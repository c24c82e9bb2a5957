//! The ordered start and stop of the stack, the emergency stops, restart policies.

use super::*;

impl Stack {
    /// Start the project in the plan's order. Each service waits for its dependencies'
    /// conditions (bounded by `condition_timeout` each). Containers already running are left
    /// as they are. Returns the names started. On an error the caller stops the stack again.
    pub async fn start_ordered(
        &self,
        plan: &Plan,
        containers: &[ContainerInfo],
        condition_timeout: Duration,
    ) -> Result<Vec<String>, DockerError> {
        let by_service: BTreeMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.service.as_str(), c)).collect();
        let mut started = Vec::new();
        for level in &plan.levels {
            let mut waited: Vec<&Dependency> = Vec::new();
            for service in level {
                for dep in plan.waits.get(service).into_iter().flatten() {
                    if waited.contains(&dep) {
                        continue;
                    }
                    waited.push(dep);
                    let container = by_service[dep.service.as_str()];
                    self.wait_for(service, container, dep.condition, condition_timeout)
                        .await?;
                }
            }
            for service in level {
                let c = by_service[service.as_str()];
                let now = self.inspect_within(condition_timeout, &c.id).await?;
                if now.may_write() {
                    continue;
                }
                self.bounded_by(
                    condition_timeout,
                    &format!("start {}", c.name),
                    self.docker.start_container(&c.id, None),
                )
                .await?;
                started.push(c.name.clone());
            }
        }
        // Everything was asked to start; a container that exited at once is a failed start.
        for c in containers {
            let now = self.inspect_within(condition_timeout, &c.id).await?;
            let completes =
                plan.waits.values().flatten().any(|d| {
                    d.service == c.service && d.condition == Condition::CompletedSuccessfully
                });
            if !(now.may_write() || completes && now.exit_code == Some(0)) {
                return Err(DockerError::ExitedAtStart {
                    container: c.name.clone(),
                    detail: format!(
                        "state {}, exit code {}",
                        now.state,
                        now.exit_code.unwrap_or(-1)
                    ),
                });
            }
        }
        Ok(started)
    }

    /// Wait until `container` meets `condition`: woken by its events, and looking again at
    /// least every second in case one was missed.
    async fn wait_for(
        &self,
        waiting: &str,
        container: &ContainerInfo,
        condition: Condition,
        timeout: Duration,
    ) -> Result<(), DockerError> {
        let not_ready = |why: String| DockerError::DependencyNotReady {
            service: waiting.to_owned(),
            dependency: container.service.clone(),
            condition: condition.name(),
            why,
        };
        if condition == Condition::Healthy && !container.has_healthcheck {
            return Err(not_ready(format!(
                "{} has no healthcheck; add one to its service or wait for service_started",
                container.name
            )));
        }
        let filters = HashMap::from([("container".to_owned(), vec![container.id.clone()])]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut events = std::pin::pin!(self.docker.events(Some(options)));
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            let now = self.inspect_within(timeout, &container.id).await?;
            let verdict = match condition {
                Condition::Started => match now.state.as_str() {
                    "running" => Some(Ok(())),
                    "exited" | "dead" => Some(Err(format!(
                        "it exited with code {}",
                        now.exit_code.unwrap_or(-1)
                    ))),
                    _ => None,
                },
                Condition::Healthy => match (now.state.as_str(), now.health.as_deref()) {
                    (_, Some("healthy")) => Some(Ok(())),
                    (_, Some("unhealthy")) => {
                        Some(Err("its healthcheck reports unhealthy".to_owned()))
                    }
                    ("exited" | "dead", _) => Some(Err(format!(
                        "it exited with code {}",
                        now.exit_code.unwrap_or(-1)
                    ))),
                    _ => None,
                },
                Condition::CompletedSuccessfully => match (now.state.as_str(), now.exit_code) {
                    ("exited", Some(0)) => Some(Ok(())),
                    ("exited" | "dead", code) => {
                        Some(Err(format!("it exited with code {}", code.unwrap_or(-1))))
                    }
                    _ => None,
                },
            };
            match verdict {
                Some(Ok(())) => return Ok(()),
                Some(Err(why)) => return Err(not_ready(why)),
                None => {}
            }
            tokio::select! {
                _ = tokio::time::sleep_until(give_up) => {
                    return Err(not_ready(format!(
                        "it was still {}{} after {}s",
                        now.state,
                        now.health.map(|h| format!(" ({h})")).unwrap_or_default(),
                        timeout.as_secs()
                    )));
                }
                _ = events.next() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Stop the project in reverse order: dependents first, each level's containers together,
    /// each with its own timeout and signal, all within `deadline`.
    pub async fn stop_ordered(
        &self,
        plan: &Plan,
        containers: &[ContainerInfo],
        settings: &StopSettings,
        deadline: Instant,
    ) -> Result<Vec<Stopped>, DockerError> {
        let by_service: BTreeMap<&str, &ContainerInfo> =
            containers.iter().map(|c| (c.service.as_str(), c)).collect();
        let levels: Vec<Vec<&ContainerInfo>> = plan
            .stop_levels()
            .map(|l| {
                l.iter()
                    .filter_map(|s| by_service.get(s.as_str()).copied())
                    .collect()
            })
            .collect();
        let wants: Vec<Duration> = levels
            .iter()
            .map(|l| {
                l.iter()
                    .map(|c| settings.timeout_for(c))
                    .max()
                    .unwrap_or_default()
            })
            .collect();
        let mut report = Vec::new();
        for (i, level) in levels.iter().enumerate() {
            let budget = plan::level_budget(
                deadline.saturating_duration_since(Instant::now()),
                &wants[i + 1..],
            );
            let stops: Vec<_> = level
                .iter()
                .map(|c| {
                    let timeout = settings.timeout_for(c).min(budget);
                    let signal = settings.signals.get(&c.service).cloned();
                    let stack = self.clone();
                    let id = c.id.clone();
                    tokio::spawn(async move { stack.stop_one(&id, timeout, signal).await })
                })
                .collect();
            let mut failures = Vec::new();
            for stop in stops {
                match stop.await {
                    Ok(Ok(Some(stopped))) => report.push(stopped),
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => failures.push(e.to_string()),
                    Err(e) => failures.push(format!("a stop task failed: {e}")),
                }
            }
            if !failures.is_empty() {
                return Err(DockerError::Api {
                    op: "stop the project's containers".into(),
                    detail: failures.join("; "),
                });
            }
        }
        Ok(report)
    }

    /// Stop one container if it runs: its own stop signal (or the configured one), then
    /// SIGKILL at `timeout`. `None` when it was not running.
    pub async fn stop_one(
        &self,
        id: &str,
        timeout: Duration,
        signal: Option<String>,
    ) -> Result<Option<Stopped>, DockerError> {
        let long = timeout + self.timeout;
        let before = self.inspect_within(long, id).await?;
        if !before.may_write() {
            return Ok(None);
        }
        let began = Instant::now();
        let own_signal = before
            .stop_signal
            .clone()
            .unwrap_or_else(|| "SIGTERM".into());
        let signal = signal.unwrap_or(own_signal.clone());
        let secs = i32::try_from(timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        // The stop call can take the whole timeout; the client must wait longer than that.
        let call_bound = timeout + self.timeout + Duration::from_secs(2);
        let unreachable_or = self.api(&format!("stop {}", before.name));
        if signal == own_signal || before.state == "paused" {
            // Docker sends the container's own stop signal, then SIGKILL at the timeout.
            let options = StopContainerOptionsBuilder::new().t(secs).build();
            tokio::time::timeout(call_bound, self.docker.stop_container(id, Some(options)))
                .await
                .map_err(|_| DockerError::Timeout {
                    socket: self.socket.clone(),
                    timeout: call_bound,
                })?
                .map_err(unreachable_or)?;
        } else {
            // A configured signal the container does not declare (e.g. SIGINT for Postgres'
            // fast shutdown): send it, wait, then kill.
            let options = KillContainerOptionsBuilder::new().signal(&signal).build();
            self.bounded(
                &format!("signal {}", before.name),
                self.docker.kill_container(id, Some(options)),
            )
            .await?;
            let mut wait = std::pin::pin!(self.docker.wait_container(id, None));
            if tokio::time::timeout(timeout, wait.next()).await.is_err() {
                let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
                self.bounded(
                    &format!("kill {}", before.name),
                    self.docker.kill_container(id, Some(options)),
                )
                .await?;
            }
        }
        let after = self.inspect_within(long, id).await?;
        Ok(Some(Stopped {
            name: before.name,
            signal,
            timeout,
            took: began.elapsed(),
            // 128 + SIGKILL, and the stop took the whole timeout: it was killed.
            killed: after.exit_code == Some(137) && began.elapsed() >= timeout,
        }))
    }

    /// Stop these containers now, all at once, each with `grace` before SIGKILL. For the
    /// fail-closed rule: not ordered, only fast. Returns the names stopped.
    pub async fn stop_now(
        &self,
        targets: &[&ListedContainer],
        grace: Duration,
        signals: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, DockerError> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let stops: Vec<_> = targets
            .iter()
            .map(|c| {
                let docker = self.docker.clone();
                let id = c.id.clone();
                // The configured signal applies to every stop (e.g. SIGINT: Postgres' fast
                // shutdown, not its smart one that waits for clients); Docker's stop sends the
                // container's own.
                match signals.get(&c.service).cloned() {
                    Some(signal) => {
                        let stack = self.clone();
                        tokio::spawn(async move {
                            let result = stack.stop_one(&id, grace, Some(signal)).await;
                            (id, result.map(|_| ()).map_err(|e| e.to_string()))
                        })
                    }
                    None => {
                        let options = StopContainerOptionsBuilder::new().t(secs).build();
                        tokio::spawn(async move {
                            let result = docker.stop_container(&id, Some(options)).await;
                            (id, result.map_err(|e| e.to_string()))
                        })
                    }
                }
            })
            .collect();
        let mut stopped = Vec::new();
        let mut failures = Vec::new();
        for stop in stops {
            match stop.await {
                Ok((id, Ok(()))) => stopped.push(id),
                Ok((id, Err(e))) => failures.push(format!("{id}: {e}")),
                Err(e) => failures.push(format!("a stop task failed: {e}")),
            }
        }
        if failures.is_empty() {
            Ok(stopped)
        } else {
            Err(DockerError::Api {
                op: "stop containers".into(),
                detail: failures.join("; "),
            })
        }
    }

    /// Set a container's restart policy to "no" (the owner's compose file is not touched).
    pub async fn disable_restart(&self, id: &str) -> Result<(), DockerError> {
        let body = ContainerUpdateBody {
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            ..Default::default()
        };
        self.bounded(
            "change a restart policy",
            self.docker.update_container(id, body),
        )
        .await
    }
}
